"""Pydantic response models of the HTTP API (the JSON contract)."""

from typing import Literal

from pydantic import BaseModel, Field


# -- response documents (the CLI's --json shapes) ------------------------------------------------
class ErrorBody(BaseModel):
    error: str
    detail: str


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    store_reachable: bool
    milvus_uri: str
    collection: str | None
    faces: int | None
    encoder: str | None


class SearchHit(BaseModel):
    image_path: str
    face_index: int
    bbox: list[float]
    distance: float
    identity: str | None
    image_sha256: str
    same_person: bool | None  # within the encoder's calibrated same-person threshold (null: none calibrated)


class SearchFace(BaseModel):
    bbox: list[float]
    det_prob: float
    hits: list[SearchHit]


class SearchResult(BaseModel):
    query: str
    threshold: float | None
    faces: list[SearchFace]


class IdentifyFace(BaseModel):
    bbox: list[float]
    identity: str | None
    distance: float | None


class IdentifyResult(BaseModel):
    query: str
    threshold: float
    faces: list[IdentifyFace]


class DuplicateGroupDoc(BaseModel):
    images: list[str]
    max_distance: float


class DuplicatesResult(BaseModel):
    threshold: float
    groups: list[DuplicateGroupDoc]


class IndexDoc(BaseModel):
    type: str
    nlist: int | None
    metric: str


class StatsResult(BaseModel):
    collection: str
    faces: int
    images: int
    encoder: str | None
    dim: int
    index: IndexDoc


# -- people ------------------------------------------------------------------------------------
class PersonFace(BaseModel):
    face_id: int
    image_path: str
    image_sha256: str
    face_index: int
    bbox: list[float]


class PersonDoc(BaseModel):
    id: int
    name: str | None
    display_name: str  # the name, or "Person 12" while unnamed
    hidden: bool
    faces: int
    cover: PersonFace | None


class PeopleResult(BaseModel):
    collection: str
    encoder: str
    people: list[PersonDoc]


class PersonDetail(PersonDoc):
    face_list: list[PersonFace]
    merged: dict[str, int] | None = None


class PersonPhotos(BaseModel):
    person: PersonDoc
    photos: list[PersonFace]


class PersonPatch(BaseModel):
    name: str | None = Field(None, max_length=255, description="New name; '' = unnamed again.")
    hidden: bool | None = None


class PersonMerge(BaseModel):
    other: int = Field(ge=0, le=2**53, description="Id of the person merged into this one (it disappears).")
