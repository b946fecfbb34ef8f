"""People of the served collection: list, show, rename, hide, merge, and all photos of a person.

The CLI (``facesearch people``) and the API (``/people``) call these and print/return the same
documents. Only faces present in the served collection count; a person whose faces are all gone
(deleted photos) is not listed.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from facesearch.errors import BadInputError, PersonNotFoundError
from facesearch.store import FaceStore
from facesearch.store.people_store import NAME_MAX, Assignment, PeopleStore, Person

FACE_FIELDS = ["id", "image_path", "image_sha256", "face_index", "bbox", "det_prob"]


class PeopleService:
    """People of one collection (the one behind the serving alias)."""

    def __init__(self, store: FaceStore, collection: str) -> None:
        self.store = store
        self.collection = collection
        self.encoder = store.encoder_of(collection) or ""
        self.people = PeopleStore(store)

    # -- reading ----------------------------------------------------------------------------
    def _members(self) -> dict[int, list[int]]:
        """person id -> ids of its faces present in the collection."""
        present = {int(r["id"]) for rows in self.store.iter_rows(self.collection, ["id"], batch_size=5000) for r in rows}
        members: dict[int, list[int]] = defaultdict(list)
        for face_id, a in self.people.assignments().items():
            if face_id in present:
                members[a.person_id].append(face_id)
        return members

    def _faces(self, ids: list[int]) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for i in range(0, len(ids), 1000):
            chunk = ", ".join(str(x) for x in ids[i : i + 1000])
            rows += self.store.query(self.collection, f"id in [{chunk}]", FACE_FIELDS)
        return sorted(rows, key=lambda r: (r["image_path"], int(r["face_index"])))

    def list(self, include_hidden: bool = False) -> dict[str, Any]:
        persons = self.people.persons(self.encoder)
        members = self._members()
        shown = [p for pid, p in persons.items() if members.get(pid) and (include_hidden or not p.hidden)]
        covers = {int(r["id"]): r for r in self._faces([min(members[p.id]) for p in shown])}
        docs = [person_doc(p, len(members[p.id]), covers.get(min(members[p.id]))) for p in shown]
        docs.sort(key=lambda d: (-d["faces"], d["id"]))
        return {"collection": self.collection, "encoder": self.encoder, "people": docs}

    def resolve(self, name_or_id: str | int) -> Person:
        """A person by id, by name (case-insensitive), or by its display name "Person 12"."""
        persons = self.people.persons(self.encoder)
        text = str(name_or_id).strip()
        if text.isdigit() and int(text) in persons:
            return persons[int(text)]
        matches = [p for p in persons.values() if text.casefold() in (p.name.casefold(), p.display_name.casefold())]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise BadInputError(f"{len(matches)} people are named {text!r}: use an id ({', '.join(str(p.id) for p in matches)})")
        raise PersonNotFoundError(f"no person {text!r} among the people of {self.collection} (facesearch people list)")

    def show(self, name_or_id: str | int) -> dict[str, Any]:
        person = self.resolve(name_or_id)
        ids = self._members().get(person.id, [])
        faces = self._faces(ids)
        doc = person_doc(person, len(ids), faces[0] if faces else None)
        doc["face_list"] = [face_doc(r) for r in faces]
        return doc

    def photos(self, name_or_id: str | int) -> dict[str, Any]:
        """Every photo the person appears in (one entry per photo, with the person's face in it)."""
        person = self.resolve(name_or_id)
        ids = self._members().get(person.id, [])
        faces = self._faces(ids)
        photos: dict[str, dict[str, Any]] = {}
        for r in faces:
            photos.setdefault(r["image_sha256"], face_doc(r))
        return {"person": person_doc(person, len(ids), faces[0] if faces else None), "photos": list(photos.values())}

    # -- changing ---------------------------------------------------------------------------
    def update(self, name_or_id: str | int, name: str | None = None, hidden: bool | None = None) -> dict[str, Any]:
        """Rename and/or hide (unhide) a person; an empty name makes it "Person N" again."""
        person = self.resolve(name_or_id)
        if name is not None:
            name = name.strip()
            if len(name) > NAME_MAX or any(ord(c) < 32 or 0xD800 <= ord(c) <= 0xDFFF for c in name):
                raise BadInputError(f"a person's name must be at most {NAME_MAX} printable characters")
        changed = Person(person.id, person.encoder, person.name if name is None else name, person.hidden if hidden is None else hidden, person.created_at)
        self.people.put_persons([changed])
        self.people.flush()
        return self.show(person.id)

    def merge(self, into: str | int, other: str | int) -> dict[str, Any]:
        """Move every face of ``other`` into ``into`` and drop ``other``; ``into`` keeps its name (else takes the other's)."""
        keep, gone = self.resolve(into), self.resolve(other)
        if keep.id == gone.id:
            raise BadInputError(f"cannot merge person {keep.id} with itself")
        moved = [Assignment(a.face_id, keep.id, a.core) for a in self.people.assignments(gone.id).values()]
        self.people.assign(moved)
        if not keep.name and gone.name:
            self.people.put_persons([Person(keep.id, keep.encoder, gone.name, keep.hidden, keep.created_at)])
        self.people.delete_persons([gone.id])
        self.people.flush()
        doc = self.show(keep.id)
        doc["merged"] = {"from": gone.id, "faces_moved": len(moved)}
        return doc


def face_doc(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "face_id": int(row["id"]),
        "image_path": row["image_path"],
        "image_sha256": row["image_sha256"],
        "face_index": int(row["face_index"]),
        "bbox": [round(float(v), 1) for v in row["bbox"]],
    }


def person_doc(person: Person, faces: int, cover: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "id": person.id,
        "name": person.name or None,
        "display_name": person.display_name,
        "hidden": person.hidden,
        "faces": faces,
        "cover": face_doc(cover) if cover else None,
    }
