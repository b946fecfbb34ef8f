"""Helpers shared by the flows: settings from flow parameters, Prefect logging."""

from __future__ import annotations

from pathlib import Path

from facesearch.settings import Settings, load_settings, parse_overrides


def flow_settings(config: list[str] | None, overrides: list[str] | None) -> Settings:
    """Flow parameters are plain strings (config files, ``section.key=value``) so runs are reproducible from the UI."""
    return load_settings([Path(p) for p in config or []], parse_overrides(list(overrides or [])))
