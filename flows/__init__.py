"""Thin Prefect orchestration over the pipeline stages."""
