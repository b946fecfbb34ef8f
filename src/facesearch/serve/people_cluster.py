"""Group stored faces into persons: batched Milvus top-k search cut at the same-person threshold + a DBSCAN rule.

The rule (README: People): two faces are neighbours when one is among the other's ``people.k`` nearest
faces and their distance is within ``identify.thresholds[encoder]``, the threshold ``identify`` uses. A face with at least
``people.min_faces`` neighbours (itself included) is a *core* face; core faces that are neighbours
belong to one person (connected components of the core graph, scipy), and a non-core face joins
the person of its nearest core neighbour. Faces that join no person stay unassigned.

Enrolled faces (``identity`` set) seed persons: faces enrolled under one name are linked, and a
person takes the name most of its enrolled faces carry. Incremental runs search only faces without a
person; they join the person their core neighbours belong to. ``full`` re-clusters every face and maps
each new cluster to the old person it overlaps most, so names survive.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from facesearch.serve.identify import identity_threshold
from facesearch.settings import Settings
from facesearch.store import FaceStore
from facesearch.store.people_store import Assignment, PeopleStore, Person

log = logging.getLogger(__name__)

Neighbours = list[list[tuple[int, float]]]  # per query face: (face id, distance), nearest first


@dataclass
class Faces:
    """The faces to cluster and what is known about every stored face."""

    ids: np.ndarray  # int64, the faces clustered in this run
    vectors: np.ndarray  # float32, one row per id
    identities: dict[int, str] = field(default_factory=dict)  # every enrolled face of the collection
    present: set[int] = field(default_factory=set)  # every face id in the collection


@dataclass
class Clusters:
    """Outcome of the rule: a cluster label per clustered face (-1 = none) or an existing person."""

    labels: np.ndarray  # per clustered face: component label, or -1
    core: np.ndarray  # bool per clustered face
    joins: dict[int, int]  # clustered face index -> existing person id (border faces, incremental)
    cluster_person: dict[int, int]  # component label -> existing person id it extends (incremental)


def find_neighbours(
    store: FaceStore,
    collection: str,
    vectors: np.ndarray,
    threshold: float,
    k: int,
    nprobe: int,
    batch: int,
    progress: Callable[[int], None] | None = None,
) -> Neighbours:
    """Stored faces within ``threshold`` of each vector: batched top-``k`` Milvus searches, cut at the threshold.

    Top-k rather than Milvus range search: on Milvus Lite a range search of a batch costs ~10x a top-k one.
    """
    out: Neighbours = []
    for i in range(0, len(vectors), batch):
        chunk = vectors[i : i + batch]
        for hits in store.neighbour_ids(collection, chunk, k=k, nprobe=nprobe):
            out.append([(f, d) for f, d in hits if d <= threshold])
        if progress:
            progress(len(chunk))
    return out


def apply_rule(ids: np.ndarray, neighbours: Neighbours, min_faces: int, existing: dict[int, Assignment], identities: dict[int, str]) -> Clusters:
    """The DBSCAN rule on a neighbour lists of ``ids``; ``existing`` are faces already in a person (not in ``ids``)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(ids)
    index = {int(f): i for i, f in enumerate(ids)}
    for i, f in enumerate(ids):  # a face is its own neighbour even when the index missed it
        if not any(u == int(f) for u, _ in neighbours[i]):
            neighbours[i].insert(0, (int(f), 0.0))
    enrolled = Counter(identities.get(int(f), "") for f in ids)
    core = np.array(
        [len(nb) >= min_faces or (bool(who := identities.get(int(f), "")) and enrolled[who] >= min_faces) for f, nb in zip(ids, neighbours, strict=True)],
        dtype=bool,
    )
    rows, cols = [], []
    for i, nb in enumerate(neighbours):
        if core[i]:
            for u, _ in nb:
                j = index.get(u)
                if j is not None and core[j]:
                    rows.append(i)
                    cols.append(j)
    by_identity: dict[str, list[int]] = defaultdict(list)
    for i, f in enumerate(ids):
        if core[i] and (who := identities.get(int(f), "")):
            by_identity[who].append(i)
    for members in by_identity.values():
        rows += members[:-1]
        cols += members[1:]
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(n, n)).tocsr()
    _, components = connected_components(graph, directed=False)
    labels = np.where(core, components, -1)
    votes: dict[int, Counter[int]] = defaultdict(Counter)
    for i, nb in enumerate(neighbours):
        if core[i]:
            for u, _ in nb:
                if (a := existing.get(u)) is not None and a.core:
                    votes[int(labels[i])][a.person_id] += 1
    cluster_person = {c: v.most_common(1)[0][0] for c, v in votes.items()}
    joins: dict[int, int] = {}
    for i, nb in enumerate(neighbours):
        if core[i]:
            continue
        for u, _ in nb:  # nearest first: the first core neighbour decides
            j = index.get(u)
            if j is not None and core[j]:
                labels[i] = labels[j]
                break
            if j is None and (a := existing.get(u)) is not None and a.core:
                joins[i] = a.person_id
                break
    return Clusters(labels=labels, core=core, joins=joins, cluster_person=cluster_person)


def match_clusters(new: dict[int, set[int]], old: dict[int, set[int]]) -> dict[int, int]:
    """New cluster label -> old person id, one to one, largest overlap first (majority overlap)."""
    pairs = sorted(((len(faces & old_faces), label, pid) for label, faces in new.items() for pid, old_faces in old.items() if faces & old_faces), reverse=True)
    taken_new: set[int] = set()
    taken_old: set[int] = set()
    out: dict[int, int] = {}
    for _, label, pid in pairs:
        if label not in taken_new and pid not in taken_old:
            out[label] = pid
            taken_new.add(label)
            taken_old.add(pid)
    return out


def load_faces(store: FaceStore, collection: str, wanted: Callable[[int], bool], batch: int = 2000) -> Faces:
    """Ids and vectors of the faces ``wanted`` picks, and ids/identities of every face."""
    ids: list[int] = []
    vectors: list[np.ndarray] = []
    faces = Faces(np.empty(0, dtype=np.int64), np.empty((0, 0), dtype=np.float32))
    for rows in store.iter_rows(collection, ["id", "identity", "embedding"], batch_size=batch):
        keep = []
        for r in rows:
            fid = int(r["id"])
            faces.present.add(fid)
            if r["identity"]:
                faces.identities[fid] = r["identity"]
            if wanted(fid):
                keep.append(r)
        ids += [int(r["id"]) for r in keep]
        if keep:
            vectors.append(np.asarray([r["embedding"] for r in keep], dtype=np.float32))
    faces.ids = np.asarray(ids, dtype=np.int64)
    faces.vectors = np.concatenate(vectors) if vectors else np.empty((0, 0), dtype=np.float32)
    return faces


def cluster_people(
    store: FaceStore, settings: Settings, collection: str, *, full: bool = False, progress: Callable[[int], None] | None = None
) -> dict[str, Any]:
    """Cluster the faces of ``collection`` into persons (incrementally unless ``full``); returns a report."""
    started = time.perf_counter()
    encoder = store.encoder_of(collection) or ""
    threshold = identity_threshold(settings, encoder)
    people = PeopleStore(store)
    existing = people.assignments()
    persons = people.persons(encoder)
    existing = {f: a for f, a in existing.items() if a.person_id in persons}
    faces = load_faces(store, collection, (lambda _f: True) if full else (lambda f: f not in existing))
    known = {} if full else {f: a for f, a in existing.items() if f in faces.present}
    nprobe = settings.people.nprobe or (store.index_info(collection).nlist or settings.index.nlist)
    neighbours = find_neighbours(store, collection, faces.vectors, threshold, settings.people.k, nprobe, settings.people.query_batch, progress)
    result = apply_rule(faces.ids, neighbours, settings.people.min_faces, known, faces.identities)
    plan = _plan(faces, result, known, existing if full else {}, persons, people.next_person_id(), encoder)
    people.put_persons(plan.persons_to_put)
    people.assign(plan.assign)
    people.unassign(plan.unassign)
    people.delete_persons(plan.persons_to_drop)
    people.flush()
    final = {**{f: a for f, a in existing.items() if f in faces.present and not full}, **{a.face_id: a for a in plan.assign}}
    return {
        "collection": collection,
        "encoder": encoder,
        "threshold": threshold,
        "min_faces": settings.people.min_faces,
        "mode": "full" if full else "incremental",
        "faces": len(faces.present),
        "clustered": len(faces.ids),
        "assigned": len(plan.assign),
        "new_persons": plan.new_persons,
        "persons": len({a.person_id for a in final.values()}),
        "unassigned": len(faces.present) - len(final),
        "seconds": round(time.perf_counter() - started, 3),
    }


@dataclass
class _Plan:
    assign: list[Assignment]
    unassign: list[int]
    persons_to_put: list[Person]
    persons_to_drop: list[int]
    new_persons: int


def _plan(
    faces: Faces,
    result: Clusters,
    known: dict[int, Assignment],
    previous: dict[int, Assignment],
    persons: dict[int, Person],
    next_id: int,
    encoder: str,
) -> _Plan:
    """Turn cluster labels into person ids: extend existing persons, map full re-clusters to old ones, new ids otherwise."""
    members: dict[int, set[int]] = defaultdict(set)
    for i, label in enumerate(result.labels):
        if label >= 0:
            members[int(label)].add(int(faces.ids[i]))
    person_of = dict(result.cluster_person)
    if previous:
        old: dict[int, set[int]] = defaultdict(set)
        for f, a in previous.items():
            old[a.person_id].add(f)
        person_of.update(match_clusters(members, old))
    new_persons = 0
    for label in sorted(members):
        if label not in person_of:
            person_of[label] = next_id
            next_id += 1
            new_persons += 1
    assign = [Assignment(int(faces.ids[i]), person_of[int(label)], bool(result.core[i])) for i, label in enumerate(result.labels) if label >= 0]
    assign += [Assignment(int(faces.ids[i]), pid, False) for i, pid in result.joins.items()]
    assigned = {a.face_id for a in assign}
    unassign = [f for f in previous if f in faces.present and f not in assigned]
    used = {a.person_id for a in assign} | {a.person_id for f, a in known.items() if f not in assigned}
    drop = [pid for pid in persons if previous and pid not in used]
    names = _names_from_identities(assign, known, faces.identities)
    put = []
    for pid in sorted(used):
        person = persons.get(pid) or Person(pid, encoder)
        if not person.name and names.get(pid):
            person = Person(pid, encoder, names[pid], person.hidden, person.created_at)
        if pid not in persons or person != persons[pid]:
            put.append(person)
    return _Plan(assign, unassign, put, drop, new_persons)


def _names_from_identities(assign: list[Assignment], known: dict[int, Assignment], identities: dict[int, str]) -> dict[int, str]:
    """person id -> the identity most of its enrolled faces carry."""
    votes: dict[int, Counter[str]] = defaultdict(Counter)
    for a in [*assign, *known.values()]:
        if who := identities.get(a.face_id):
            votes[a.person_id][who] += 1
    return {pid: v.most_common(1)[0][0] for pid, v in votes.items()}
