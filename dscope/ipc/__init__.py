"""dscope.ipc"""
