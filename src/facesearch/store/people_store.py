"""Persons and which face belongs to whom, kept in two small Milvus collections beside the faces.

``<prefix>_people`` holds one row per person (id, encoder, name, hidden) and ``<prefix>_face_people``
one row per clustered face (face id -> person id, whether the face is a core point). Both are keyed
by things that do not change when photos are re-indexed into a new collection: a face's primary key
is derived from (image sha256, face index, encoder id), so promotion, which builds a fresh face
collection and drops old ones, keeps every assignment and name. Milvus requires a vector field in
every collection: ``_unused`` is a 2-d zero vector (as in the registry).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from facesearch.store.face_store import FaceStore
from facesearch.store.records import quote

NAME_MAX = 255


@dataclass(frozen=True)
class Person:
    id: int
    encoder: str
    name: str = ""
    hidden: bool = False
    created_at: float = 0.0

    @property
    def display_name(self) -> str:
        """What users see: the name, or "Person 12" while unnamed."""
        return self.name or f"Person {self.id}"


@dataclass(frozen=True)
class Assignment:
    face_id: int
    person_id: int
    core: bool  # a core point (DBSCAN): it recruits its neighbours into the person


class PeopleStore:
    """Persons and face -> person assignments in Milvus, created on first use."""

    def __init__(self, store: FaceStore) -> None:
        self.store = store
        prefix = store.settings.collection_prefix
        self.people = f"{prefix}_people"
        self.faces = f"{prefix}_face_people"
        self._ready = False

    def _ensure(self) -> None:
        if self._ready:
            return
        from pymilvus import DataType

        self._create(
            self.people,
            [
                ("id", DataType.INT64, {}),
                ("encoder", DataType.VARCHAR, {"max_length": 64}),
                ("name", DataType.VARCHAR, {"max_length": NAME_MAX}),
                ("hidden", DataType.BOOL, {}),
                ("created_at", DataType.DOUBLE, {}),
            ],
        )
        self._create(self.faces, [("face_id", DataType.INT64, {}), ("person_id", DataType.INT64, {}), ("core", DataType.BOOL, {})])
        self._ready = True

    def _create(self, name: str, fields: list[tuple[str, Any, dict[str, Any]]]) -> None:
        client = self.store.client
        if not client.has_collection(name):
            from pymilvus import DataType, MilvusClient

            schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
            for i, (field, dtype, params) in enumerate(fields):
                schema.add_field(field, dtype, is_primary=i == 0, **params)
            schema.add_field("_unused", DataType.FLOAT_VECTOR, dim=2)
            index = client.prepare_index_params()
            index.add_index(field_name="_unused", index_type="FLAT", metric_type="L2")
            client.create_collection(name, schema=schema, index_params=index, consistency_level="Strong")
        self.store.ensure_loaded(name)

    # -- persons ----------------------------------------------------------------------------
    def persons(self, encoder: str) -> dict[int, Person]:
        self._ensure()
        rows = self.store.client.query(self.people, filter=f"encoder == {quote(encoder)}", output_fields=["*"])
        return {int(r["id"]): _person(r) for r in rows}

    def person(self, person_id: int) -> Person | None:
        self._ensure()
        rows = self.store.client.query(self.people, filter=f"id == {int(person_id)}", output_fields=["*"])
        return _person(rows[0]) if rows else None

    def put_persons(self, persons: Iterable[Person]) -> None:
        self._ensure()
        now = time.time()
        rows = [
            {"id": p.id, "encoder": p.encoder, "name": p.name[:NAME_MAX], "hidden": p.hidden, "created_at": p.created_at or now, "_unused": [0.0, 0.0]}
            for p in persons
        ]
        for i in range(0, len(rows), 1000):
            self.store.client.upsert(self.people, rows[i : i + 1000])

    def delete_persons(self, ids: Sequence[int]) -> None:
        self._ensure()
        for i in range(0, len(ids), 1000):
            self.store.client.delete(self.people, filter=f"id in [{', '.join(str(int(x)) for x in ids[i : i + 1000])}]")

    def next_person_id(self) -> int:
        """One more than the largest person id ever stored (ids are never reused while stored)."""
        self._ensure()
        ids = [int(r["id"]) for batch in self.store.iter_rows(self.people, ["id"]) for r in batch]
        return max(ids, default=0) + 1

    # -- assignments ------------------------------------------------------------------------
    def assignments(self, person_id: int | None = None) -> dict[int, Assignment]:
        """face id -> assignment, for every face or for one person's faces."""
        self._ensure()
        expr = f"person_id == {int(person_id)}" if person_id is not None else ""
        out: dict[int, Assignment] = {}
        for batch in self.store.iter_rows(self.faces, ["face_id", "person_id", "core"], batch_size=5000, filter=expr):
            for r in batch:
                out[int(r["face_id"])] = Assignment(int(r["face_id"]), int(r["person_id"]), bool(r["core"]))
        return out

    def assign(self, assignments: Sequence[Assignment]) -> None:
        self._ensure()
        for i in range(0, len(assignments), 2000):
            rows = [{"face_id": a.face_id, "person_id": a.person_id, "core": a.core, "_unused": [0.0, 0.0]} for a in assignments[i : i + 2000]]
            self.store.client.upsert(self.faces, rows)

    def unassign(self, face_ids: Sequence[int]) -> None:
        self._ensure()
        for i in range(0, len(face_ids), 1000):
            chunk = ", ".join(str(int(x)) for x in face_ids[i : i + 1000])
            self.store.client.delete(self.faces, filter=f"face_id in [{chunk}]")

    def flush(self) -> None:
        self._ensure()
        self.store.client.flush(self.people)
        self.store.client.flush(self.faces)


def _person(row: dict[str, Any]) -> Person:
    return Person(int(row["id"]), row["encoder"], row["name"], bool(row["hidden"]), float(row["created_at"]))
