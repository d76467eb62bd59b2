"""dscope.reporting"""
