"""Property-based API checks (schemathesis) against the real app, served by uvicorn, on a small indexed
store: no 5xx, and every response matches the OpenAPI document (status codes, content types, bodies)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode

from facesearch.serve.api import create_app
from facesearch.settings import Settings
from tests.conftest import SAMPLES, make_settings
from tests.integration.test_api import index_into, serving

pytestmark = pytest.mark.integration

# The document is the app's own (no I/O to build it). It is loaded from the dict at import time because
# schemathesis.pytest.from_fixture fails on pytest 9 (it reads the removed Node._nodeid). Only the
# api section shapes the document, and the served app below keeps its defaults: the fixture checks that.
OPENAPI = create_app(Settings()).openapi()
schema = schemathesis.openapi.from_dict(OPENAPI)
UPLOAD_PATHS = ("/search", "/identify")
# Schema-valid uploads get real photos with faces: "any binary string" is schema-valid but is not a photo,
# and 422 is the right answer to it (negative-mode cases still send arbitrary bytes).
PHOTOS = [SAMPLES / "johns" / "John_Simm" / "000310_00470511.jpg", SAMPLES / "johns" / "John_Salley" / "000179_02159509.jpg"]


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Two enrolled photos and a group photo indexed; the real app under uvicorn for the whole module."""
    root = tmp_path_factory.mktemp("schemathesis")
    photos = root / "photos"
    (photos / "John_Simm").mkdir(parents=True)
    for src in sorted((SAMPLES / "johns" / "John_Simm").glob("*.jpg"))[:2]:
        shutil.copy(src, photos / "John_Simm" / src.name)
    shutil.copy(SAMPLES / "group_photos" / "sample2.jpg", photos / "group.jpg")
    config = make_settings(root)
    index_into(config, [photos / "John_Simm"], [photos / "group.jpg"])
    app = create_app(config)
    assert app.openapi() == OPENAPI
    with serving(app) as url:
        yield url


@schema.parametrize()
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case: schemathesis.Case, base_url: str) -> None:
    if case.path in UPLOAD_PATHS and case.meta and case.meta.generation.mode == GenerationMode.POSITIVE and isinstance(case.body, dict):
        drawn = case.body.get("image") or b""
        case.body["image"] = PHOTOS[len(drawn) % len(PHOTOS)].read_bytes()
    case.call_and_validate(base_url=base_url)
