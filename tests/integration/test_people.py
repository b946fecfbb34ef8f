"""People: clustering the johns into persons, incremental runs, names across promotion, managing them (CLI + API).

Real SFace model (fast, its threshold calibrated on the johns), real Milvus Lite, the real CLI and FastAPI app.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from facesearch.serve.api import create_app
from facesearch.settings import Settings
from tests.clihelpers import Cli
from tests.conftest import make_settings

pytestmark = pytest.mark.integration

SFACE = ("--set", "encoder.backend=sface")


def people_cli(target: dict[str, str]) -> Cli:
    return Cli(target)


def run(cli: Cli, *args: str) -> dict:
    result = cli(*args, settings_args=SFACE)
    assert result.exit_code == 0, result.stderr
    return result.json


def reset_people(settings: Settings) -> None:
    """Forget every person (the face collection stays): each test clusters from scratch."""
    from facesearch.store import FaceStore
    from facesearch.store.people_store import PeopleStore

    with FaceStore(settings.milvus) as store:
        people = PeopleStore(store)
        for name in (people.people, people.faces):
            if store.has_collection(name):
                store.drop_collection(name)


def partition(cli: Cli) -> dict[str, int]:
    """image path -> person id, for every clustered face (one face per john photo)."""
    out = {}
    for person in run(cli, "people", "list", "--hidden", "--json")["people"]:
        for face in run(cli, "people", "show", str(person["id"]), "--json")["face_list"]:
            out[f"{face['image_path']}#{face['face_index']}"] = person["id"]
    return out


@pytest.fixture(scope="module")
def johns_store(tmp_path_factory: pytest.TempPathFactory, johns: Path) -> Iterator[tuple[Settings, Cli]]:
    """Every john indexed WITHOUT identities (SFace), once for the module."""
    root = tmp_path_factory.mktemp("people")
    target = {"uri": str(root / "milvus" / "faces.db"), "db_name": ""}
    cli = people_cli(target)
    assert cli("index", str(johns), "--json", settings_args=SFACE).exit_code == 0
    yield make_settings(root, target, encoder={"backend": "sface"}), cli


def test_johns_cluster_into_five_people(johns_store: tuple[Settings, Cli], johns: Path) -> None:
    settings, cli = johns_store
    reset_people(settings)
    doc = run(cli, "people", "cluster", "--json")
    assert doc["mode"] == "incremental" and doc["threshold"] == settings.identify.thresholds["sface-2021dec"]
    assert doc["persons"] == 5 and doc["new_persons"] == 5
    scores = run(cli, "people", "evaluate", str(johns), "--json")
    assert scores["labels"] == 5 and scores["persons"] == 5
    assert scores["merged"] == 0, "a person holds faces of two johns"
    assert scores["bcubed_f1"] >= 0.95 and scores["split"] == 0
    again = run(cli, "people", "cluster", "--json")  # nothing new: nothing clustered, nobody created
    assert again["clustered"] == 0 and again["new_persons"] == 0 and again["persons"] == 5


def test_manage_people_through_the_cli(johns_store: tuple[Settings, Cli]) -> None:
    settings, cli = johns_store
    reset_people(settings)
    run(cli, "people", "cluster", "--json")
    listed = run(cli, "people", "list", "--json")["people"]
    assert len(listed) == 5 and all(p["display_name"] == f"Person {p['id']}" and p["name"] is None for p in listed)
    first, second = listed[0], listed[1]

    named = run(cli, "people", "name", str(first["id"]), "Jane Doe", "--json")
    assert named["display_name"] == "Jane Doe"
    photos = run(cli, "people", "photos", "jane doe", "--json")["photos"]  # by name, any case
    assert len(photos) == first["faces"] and len({Path(p["image_path"]).parent.name for p in photos}) == 1

    hidden = run(cli, "people", "hide", f"Person {second['id']}", "--json")
    assert hidden["hidden"] is True
    assert second["id"] not in {p["id"] for p in run(cli, "people", "list", "--json")["people"]}
    assert second["id"] in {p["id"] for p in run(cli, "people", "list", "--hidden", "--json")["people"]}

    merged = run(cli, "people", "merge", "Jane Doe", str(second["id"]), "--json")
    assert merged["faces"] == first["faces"] + second["faces"] and merged["merged"]["from"] == second["id"]
    gone = cli("people", "show", str(second["id"]), settings_args=SFACE)
    assert gone.exit_code == 2 and "no person" in gone.stderr
    assert cli("people", "merge", "Jane Doe", "Jane Doe", settings_args=SFACE).exit_code == 2


def test_manage_people_through_the_api(johns_store: tuple[Settings, Cli], johns: Path) -> None:
    settings, cli = johns_store
    reset_people(settings)
    run(cli, "people", "cluster", "--json")
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        people = client.get("/people").json()["people"]
        assert len(people) == 5 and all(p["cover"]["image_sha256"] for p in people)
        a, b = people[0]["id"], people[1]["id"]
        patched = client.patch(f"/people/{a}", json={"name": "Ann"})
        assert patched.status_code == 200 and patched.json()["display_name"] == "Ann"
        assert client.get(f"/people/{a}").json()["name"] == "Ann"
        photos = client.get(f"/people/{a}/photos").json()
        assert photos["person"]["name"] == "Ann" and len(photos["photos"]) == people[0]["faces"]
        assert client.patch(f"/people/{b}", json={"hidden": True}).json()["hidden"] is True
        assert b not in {p["id"] for p in client.get("/people").json()["people"]}
        merged = client.post(f"/people/{a}/merge", json={"other": b})
        assert merged.status_code == 200 and merged.json()["faces"] == people[0]["faces"] + people[1]["faces"]
        missing = client.get(f"/people/{b}")
        assert missing.status_code == 404 and missing.json()["error"] == "person_not_found"
        assert client.patch(f"/people/{a}", json={"name": "x" * 300}).status_code == 422
        assert client.post(f"/people/{a}/merge", json={"other": a}).status_code == 422
        query = min((johns / "John_Simm").glob("*.jpg"))
        found = client.post("/search", files={"image": (query.name, query.read_bytes(), "image/jpeg")}, data={"k": "20"})
        hits, threshold = found.json()["faces"][0]["hits"], found.json()["threshold"]
        assert any(h["same_person"] is False for h in hits) and all(h["same_person"] == (h["distance"] <= threshold) for h in hits)


def test_search_hits_say_same_person_by_the_threshold(johns_store: tuple[Settings, Cli], johns: Path) -> None:
    _, cli = johns_store
    query = min((johns / "John_Simm").glob("*.jpg"))
    doc = run(cli, "search", str(query), "-k", "20", "--json")
    threshold = doc["threshold"]
    hits = doc["faces"][0]["hits"]
    assert threshold == pytest.approx(1.04)
    assert [h["same_person"] for h in hits] == [h["distance"] <= threshold for h in hits]
    assert any(h["same_person"] for h in hits) and not all(h["same_person"] for h in hits)
    assert all(Path(h["image_path"]).parent.name == "John_Simm" for h in hits if h["same_person"])


def test_incremental_clustering_matches_full_and_keeps_names(tmp_path: Path, johns: Path, samples: Path) -> None:
    """Half the johns (John_Simm enrolled), cluster, name one; the rest + group photos, cluster; then --full and a promotion."""
    first, rest = tmp_path / "first", tmp_path / "rest"
    for person in sorted(p for p in johns.iterdir() if p.is_dir()):
        photos = sorted(person.glob("*.jpg"))
        for i, photo in enumerate(photos):
            dst = (first if i < len(photos) // 2 else rest) / person.name / photo.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(photo, dst)
    target = {"uri": str(tmp_path / "milvus" / "faces.db"), "db_name": ""}
    cli = people_cli(target)
    assert cli("index", str(first / "John_Simm"), "--identity-from-folder", "--json", settings_args=SFACE).exit_code == 0
    others = [str(p) for p in sorted(first.iterdir()) if p.name != "John_Simm"]
    assert cli("index", *others, "--json", settings_args=SFACE).exit_code == 0
    assert run(cli, "people", "cluster", "--json")["persons"] == 5
    listed = run(cli, "people", "list", "--json")["people"]
    assert "John_Simm" in {p["name"] for p in listed}, "an enrolled identity names its cluster"
    named = next(p for p in listed if p["name"] is None)
    run(cli, "people", "name", str(named["id"]), "Kept Name", "--json")

    groups = [str(samples / "group_photos"), str(samples / "voc_groups")]
    assert cli("index", str(rest), *groups, "--json", settings_args=SFACE).exit_code == 0
    doc = run(cli, "people", "cluster", "--json")
    assert doc["mode"] == "incremental" and 0 < doc["clustered"] < doc["faces"]
    incremental = partition(cli)
    run(cli, "people", "cluster", "--full", "--json")
    full = partition(cli)
    assert incremental == full, "incremental clustering differs from a full one"
    johns_faces = {f: pid for f, pid in full.items() if "/first/" in f or "/rest/" in f}
    strangers = {f: pid for f, pid in full.items() if f not in johns_faces}
    assert not set(johns_faces.values()) & set(strangers.values()), "a john was merged with a stranger"
    by_person: dict[int, set[str]] = {}
    for face, pid in johns_faces.items():
        by_person.setdefault(pid, set()).add(Path(face.split("#")[0]).parent.name)
    assert len(by_person) == 5 and all(len(names) == 1 for names in by_person.values())
    names = {p["name"] for p in run(cli, "people", "list", "--json")["people"]}
    assert {"John_Simm", "Kept Name"} <= names

    promote_copy(make_settings(tmp_path, target, encoder={"backend": "sface"}))
    after = {p["name"] for p in run(cli, "people", "list", "--json")["people"]}
    assert {"John_Simm", "Kept Name"} <= after, "names lost when a new collection was promoted"
    assert partition(cli) == full


def promote_copy(settings: Settings) -> None:
    """What promotion does to the faces: the same rows in a new collection behind the alias, the old one dropped."""
    from facesearch.store import FaceStore

    with FaceStore(settings.milvus) as store:
        old = store.resolve(settings.milvus.alias)
        records = [r for batch in store.iter_rows(old, ["id"]) for r in batch]
        rows = store.records(old, f"id in [{', '.join(str(r['id']) for r in records)}]")
        new = store.collection_name(rows[0].encoder, "promoted")
        store.ensure_collection(new, store.dimension(old), settings.index)
        store.upsert(new, rows)
        store.flush(new)
        store.point_alias(settings.milvus.alias, new)
        store.drop_collection(old)
