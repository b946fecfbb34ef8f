"""The MLOps re-index pipeline: DVC version, GX validation, embedding, candidate collections, index sweep in MLflow, promotion."""
