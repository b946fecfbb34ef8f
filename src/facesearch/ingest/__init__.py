"""Ingest: find and decode photos, fingerprint them, detect + embed faces, write them to the store or the embedding cache."""
