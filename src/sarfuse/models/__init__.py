"""sarfuse.models"""
