"""sarfuse.data"""
