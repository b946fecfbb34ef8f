"""Browser tests: Debian's chromium driven by Playwright (no browser download)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: drives Debian's chromium through Playwright")
