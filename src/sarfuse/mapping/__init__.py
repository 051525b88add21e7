"""sarfuse.mapping"""
