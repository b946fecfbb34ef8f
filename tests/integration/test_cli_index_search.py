"""The CLI end to end on a real Milvus Lite database and the real dlib model."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.imagefactory import cropped, resized_recompressed, truncated_jpeg

pytestmark = pytest.mark.integration


@pytest.fixture
def photo_dir(tmp_path: Path, johns: Path, samples: Path) -> Path:
    """Two people (identity = folder) plus one group photo."""
    root = tmp_path / "photos"
    for person in ("John_Simm", "John_Salley"):
        shutil.copytree(johns / person, root / person)
    shutil.copy(samples / "group_photos" / "sample3.jpg", root / "group.jpg")
    return root


def test_index_twice_is_idempotent_and_search_finds_itself(cli, tmp_path: Path, photo_dir: Path):
    first = cli("index", str(photo_dir), "--identity-from-folder", "--json")
    assert first.exit_code == 0, first.stderr
    doc = first.json
    assert set(doc) >= {"images_seen", "images_indexed", "faces_indexed", "images_skipped", "collection"}
    assert doc["images_seen"] == 23 and doc["images_indexed"] == 23 and doc["images_skipped"] == []
    assert doc["faces_indexed"] >= 22 + 3
    assert doc["collection"] == "face_search__dlib_resnet_v1"
    stats_before = cli("stats", "--json").json

    again = cli("index", str(photo_dir), "--identity-from-folder", "--json").json
    assert again["images_indexed"] == 0 and again["images_unchanged"] == 23 and again["faces_indexed"] == 0
    stats_after = cli("stats", "--json").json
    assert stats_after["faces"] == stats_before["faces"] == doc["faces_indexed"]
    assert stats_after["images"] == 23

    forced = cli("index", str(photo_dir), "--force", "--json").json  # re-embed: same keys, no new rows
    assert forced["images_indexed"] == 23
    assert cli("stats", "--json").json["faces"] == doc["faces_indexed"]

    query = photo_dir / "John_Simm" / "000300_00470148.jpg"
    found = cli("search", str(query), "-k", "5", "--json")
    assert found.exit_code == 0, found.stderr
    faces = found.json["faces"]
    assert len(faces) == 1 and len(faces[0]["hits"]) == 5
    top = faces[0]["hits"][0]
    assert top["image_path"] == str(query.resolve()) and top["distance"] < 1e-3 and top["identity"] == "John_Simm"
    distances = [h["distance"] for h in faces[0]["hits"]]
    assert distances == sorted(distances)


def test_search_group_photo_returns_hits_per_face(cli, tmp_path: Path, photo_dir: Path):
    assert cli("index", str(photo_dir), "--json").exit_code == 0
    doc = cli("search", str(photo_dir / "group.jpg"), "--json").json
    assert len(doc["faces"]) >= 3
    for i, face in enumerate(doc["faces"]):
        assert face["hits"][0]["image_path"].endswith("group.jpg") and face["hits"][0]["face_index"] == i
        assert face["hits"][0]["bbox"] == pytest.approx(face["bbox"], abs=1.0)


def test_identify_known_and_unknown(cli, tmp_path: Path, photo_dir: Path, johns: Path):
    held_out = photo_dir / "John_Simm" / "000310_00470511.jpg"
    held_copy = tmp_path / "held_out.jpg"
    shutil.move(held_out, held_copy)
    assert cli("index", str(photo_dir), "--identity-from-folder", "--json").exit_code == 0
    known = cli("identify", str(held_copy), "--json").json
    assert [f["identity"] for f in known["faces"]] == ["John_Simm"]
    assert known["faces"][0]["distance"] <= known["threshold"]
    stranger = next((johns / "John_Shimkus").glob("*.jpg"))  # not enrolled
    unknown = cli("identify", str(stranger), "--json").json
    assert unknown["faces"][0]["identity"] is None and unknown["faces"][0]["distance"] > unknown["threshold"]


def test_bad_files_are_skipped_with_reasons(cli, tmp_path: Path, photo_dir: Path, samples: Path):
    bad = photo_dir / "bad"
    bad.mkdir()
    (bad / "zero.jpg").write_bytes(b"")
    (bad / "text.jpg").write_text("this is not a photo\n")
    (bad / "truncated.jpg").write_bytes(truncated_jpeg(photo_dir / "group.jpg"))
    shutil.copy(samples / "voc_groups" / "dogs.jpg", bad / "dogs.jpg")
    result = cli("index", str(photo_dir), "--json")
    assert result.exit_code == 0, result.stderr
    doc = result.json
    reasons = {Path(s["path"]).name: s["reason"] for s in doc["images_skipped"]}
    assert reasons == {"zero.jpg": "empty_file", "text.jpg": "not_an_image", "truncated.jpg": "truncated", "dogs.jpg": "no_face"}
    assert doc["images_indexed"] == 23 and doc["images_seen"] == 27
    assert cli("stats", "--json").json["images"] == 23


def test_duplicates_groups_copies_not_people(cli, tmp_path: Path, samples: Path, johns: Path):
    root = tmp_path / "dups"
    simm = sorted((johns / "John_Simm").glob("*.jpg"))
    for src in simm[:5] + sorted((johns / "John_Salley").glob("*.jpg"))[:3]:
        shutil.copy(src, root / src.parent.name / src.name) if (root / src.parent.name).is_dir() else ((root / src.parent.name).mkdir(parents=True), shutil.copy(src, root / src.parent.name / src.name))
    resized_recompressed(simm[0], root / "copies" / "simm_small.jpg", scale=0.6, quality=70)
    group = root / "group" / "sample2.jpg"
    group.parent.mkdir()
    shutil.copy(samples / "group_photos" / "sample2.jpg", group)
    resized_recompressed(group, root / "copies" / "group_small.jpg", scale=0.5, quality=65)
    cropped(group, root / "copies" / "group_cropped.jpg", fraction=0.04)
    assert cli("index", str(root), "--json").exit_code == 0

    result = cli("duplicates", "--json")
    assert result.exit_code == 0, result.stderr
    groups = [sorted(Path(p).name for p in g["images"]) for g in result.json["groups"]]
    assert sorted(["group_cropped.jpg", "group_small.jpg", "sample2.jpg"]) in groups
    assert sorted([simm[0].name, "simm_small.jpg"]) in groups
    for g in result.json["groups"]:
        people = {Path(p).parent.name for p in g["images"]} - {"copies", "group"}
        assert len(people) <= 1, f"different people grouped as duplicates: {g}"


def test_delete_by_image_and_identity(cli, tmp_path: Path, photo_dir: Path):
    assert cli("index", str(photo_dir), "--identity-from-folder", "--json").exit_code == 0
    before = cli("stats", "--json").json
    salley = len(list((photo_dir / "John_Salley").glob("*.jpg")))

    gone = cli("delete", "--image", str(photo_dir / "group.jpg"), "--json").json
    assert gone["deleted"] >= 3
    after_image = cli("stats", "--json").json
    assert after_image["faces"] == before["faces"] - gone["deleted"] and after_image["images"] == before["images"] - 1

    by_name = cli("delete", "--identity", "John_Salley", "--json").json
    assert by_name["deleted"] == salley
    after = cli("stats", "--json").json
    assert after["faces"] == after_image["faces"] - salley
    hits = cli("search", str(next((photo_dir / "John_Salley").glob("*.jpg"))), "-k", "50", "--json").json
    assert all(h["identity"] != "John_Salley" for h in hits["faces"][0]["hits"])
    assert cli("delete", "--identity", "Nobody", "--json").json == {"deleted": 0}


def test_stats_reports_index_in_force(cli, tmp_path: Path, photo_dir: Path):
    assert cli("index", str(photo_dir / "John_Simm"), "--json", settings_args=("--set", "index.nlist=24")).exit_code == 0
    doc = cli("stats", "--json").json
    assert doc["index"] == {"type": "IVF_FLAT", "nlist": 24, "metric": "L2"}
    assert doc["encoder"] == "dlib-resnet-v1" and doc["dim"] == 128 and doc["collection"] == "face_search__dlib_resnet_v1"


def test_exit_codes_and_one_line_errors(cli, tmp_path: Path, photo_dir: Path, samples: Path):
    not_image = tmp_path / "notes.jpg"
    not_image.write_text("hello")
    empty_store = cli("search", str(photo_dir / "group.jpg"))
    assert empty_store.exit_code == 1 and "index some photos first" in empty_store.stderr

    assert cli("index", str(photo_dir / "John_Simm"), "--json").exit_code == 0
    bad_image = cli("search", str(not_image))
    assert bad_image.exit_code == 2 and "not_an_image" in bad_image.stderr and "Traceback" not in bad_image.stderr
    no_face = cli("identify", str(samples / "voc_groups" / "dogs.jpg"))
    assert no_face.exit_code == 2 and "no face found" in no_face.stderr
    missing = cli("search", str(tmp_path / "missing.jpg"))
    assert missing.exit_code == 2
    bad_config = cli("stats", settings_args=("--set", "index.nprobe=zero"))
    assert bad_config.exit_code == 2 and "index.nprobe" in bad_config.stderr
    down = cli("stats", settings_args=("--set", "milvus.uri=http://127.0.0.1:9", "--set", "milvus.db_name=", "--set", "milvus.timeout_s=2"))
    assert down.exit_code == 1 and "http://127.0.0.1:9" in down.stderr and "Traceback" not in down.stderr
    both = cli("delete")
    assert both.exit_code == 2
