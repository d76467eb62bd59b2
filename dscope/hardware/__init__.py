"""dscope.hardware"""
