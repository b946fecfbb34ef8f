"""Inference models behind a lazy-loading base: face detectors and face encoders, built by name."""
