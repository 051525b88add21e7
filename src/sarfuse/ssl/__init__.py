"""sarfuse.ssl"""
