"""Prefect flows for FaceSearch. Thin: each task calls one function of ``facesearch.pipeline.steps``."""
