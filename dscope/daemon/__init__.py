"""dscope.daemon"""
