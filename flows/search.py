"""Ad-hoc search flow against the promoted collection (the ``face_search`` alias)."""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.artifacts import create_table_artifact

from facesearch.serve.query import search_image
from facesearch.settings import Settings
from flows.common import flow_settings


@task(retries=2, retry_delay_seconds=[2, 10])
def search(settings: Settings, image: str, k: int) -> dict[str, Any]:
    return search_image(settings, image, k)


@flow(name="facesearch-search")
def search_flow(image: str, k: int = 10, config: list[str] | None = None, overrides: list[str] | None = None) -> dict[str, Any]:
    settings = flow_settings(config, overrides)
    doc = search(settings, image, k)
    rows = [
        {"face": i, "rank": r + 1, "distance": h["distance"], "identity": h["identity"] or "", "image_path": h["image_path"]}
        for i, face in enumerate(doc["faces"])
        for r, h in enumerate(face["hits"])
    ]
    create_table_artifact(key="face-search-results", table=rows, description=f"top-{k} faces for {image}")
    return doc
