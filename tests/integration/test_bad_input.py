"""A folder of everything real photo folders contain, indexed in one run: good photos in every
encoding get indexed (faces found upright), every bad file is skipped with a specific reason,
nothing raises, and memory stays bounded."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.imagefactory import exif_rotated_jpeg, jpeg_bytes, png_bomb_bytes, sixteen_bit_png, truncated_jpeg

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

# file name -> expected skip reason (None: must be indexed with at least one face)
EXPECTED: dict[str, str | None] = {
    "good.jpg": None,
    "zero_bytes.jpg": "empty_file",
    "text_named.jpg": "not_an_image",
    "truncated.jpg": "truncated",
    "bomb.png": "too_many_pixels",
    "cmyk.jpg": None,
    "sixteen_bit.png": None,
    "grayscale.jpg": None,
    "rgba.png": None,
    "palette_transparent.png": None,
    "exif_rotated.jpg": None,
    "animated.gif": None,
    "iphone.heic": "unsupported_format",
    "heic_bytes_named.jpg": "not_an_image",
    "ünïcödé näme 写真.jpg": None,
    "   spaces   .jpg": None,
    "dangling.jpg": "dangling_symlink",
    "loop.jpg": "symlink_loop",
    "huge_valid.jpg": None,
    "no_face.jpg": "no_face",
}


def build_corpus(folder: Path, samples: Path) -> None:
    face = samples / "johns" / "John_Simm" / "000288_00470387.jpg"
    group = samples / "group_photos" / "sample3.jpg"
    rgb = Image.open(face).convert("RGB")
    folder.mkdir(parents=True)
    (folder / "good.jpg").write_bytes(face.read_bytes())
    (folder / "zero_bytes.jpg").write_bytes(b"")
    (folder / "text_named.jpg").write_text("a shopping list, not a photo\n")
    (folder / "truncated.jpg").write_bytes(truncated_jpeg(group))
    (folder / "bomb.png").write_bytes(png_bomb_bytes(40000, 40000))
    (folder / "cmyk.jpg").write_bytes(jpeg_bytes(rgb.convert("CMYK")))
    (folder / "sixteen_bit.png").write_bytes(sixteen_bit_png(face))
    (folder / "grayscale.jpg").write_bytes(jpeg_bytes(rgb.convert("L")))
    rgba = rgb.convert("RGBA")
    rgba.putalpha(Image.new("L", rgb.size, 255))
    rgba.save(folder / "rgba.png")
    pal = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=255)
    pal.info["transparency"] = 254
    pal.save(folder / "palette_transparent.png", transparency=254)
    (folder / "exif_rotated.jpg").write_bytes(exif_rotated_jpeg(group))
    frames = [rgb, rgb.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:], duration=200, loop=0)
    heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + os.urandom(512)
    (folder / "iphone.heic").write_bytes(heic)
    (folder / "heic_bytes_named.jpg").write_bytes(heic)
    shutil.copy(face, folder / "ünïcödé näme 写真.jpg")
    shutil.copy(face, folder / "   spaces   .jpg")
    os.symlink(folder / "gone.jpg", folder / "dangling.jpg")
    os.symlink("loop.jpg", folder / "loop.jpg")  # points at itself
    (folder / "photo_folder.jpg").mkdir()  # a directory named like an image: walked, not opened
    shutil.copy(face, folder / "photo_folder.jpg" / "inside.jpg")
    os.symlink(folder, folder / "photo_folder.jpg" / "back_up")  # directory loop: not followed
    big = Image.open(group).convert("RGB").resize((7200, 4800), Image.Resampling.BILINEAR)  # 34.6 MP < 40 MP limit
    big.save(folder / "huge_valid.jpg", quality=85)
    shutil.copy(samples / "voc_groups" / "dogs.jpg", folder / "no_face.jpg")


def test_mixed_folder_indexes_every_good_photo_and_names_every_bad_one(tmp_path: Path, samples: Path, milvus_target):
    from tests.conftest import target_overrides

    folder = tmp_path / "photos"
    build_corpus(folder, samples)
    sets = [a for o in [*target_overrides(milvus_target), "encoder.backend=dlib", "index.nlist=16"] for a in ("--set", o)]
    # A real process, so peak memory (ru_maxrss) is this run's alone.
    code = (
        "import resource, sys\nfrom facesearch.cli import app\n"
        "try:\n    app(sys.argv[1:])\nexcept SystemExit as e:\n    code = e.code\n"
        "print('MAXRSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\nsys.exit(code)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, *sets, "index", str(folder), "--json"], capture_output=True, text=True, timeout=600, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    doc = json.loads(proc.stdout)
    skipped = {Path(s["path"]).name: s["reason"] for s in doc["images_skipped"]}
    expected_bad = {name: reason for name, reason in EXPECTED.items() if reason}
    assert skipped == expected_bad
    good = [name for name, reason in EXPECTED.items() if reason is None] + ["inside.jpg"]
    assert doc["images_seen"] == len(EXPECTED) + 1
    # byte-identical copies (good, unicode, spaces, inside) share one row set: indexed once, then "unchanged"
    assert doc["images_indexed"] + doc["images_unchanged"] == len(good)
    peak_mb = int(proc.stderr.rsplit("MAXRSS_KB", 1)[1].split()[0]) / 1024
    print(f"\nbad-input corpus: {len(EXPECTED) + 1} files, {len(expected_bad)} kinds skipped, peak RSS {peak_mb:.0f} MB")
    assert peak_mb < 4000

    from facesearch.settings import load_settings, parse_overrides
    from facesearch.store import FaceStore

    settings = load_settings(overrides=parse_overrides(target_overrides(milvus_target)))
    with FaceStore(settings.milvus) as store:
        collection = store.resolve("face_search")
        rows = store.query(collection, "face_index >= 0", ["image_paths", "bbox"])
    indexed_names = {Path(p).name for r in rows for p in r["image_paths"]}
    assert set(good) <= indexed_names
    # the EXIF-rotated group photo was read upright: its faces sit where the upright photo's do
    upright = Image.open(samples / "group_photos" / "sample3.jpg")
    rotated_boxes = [r["bbox"] for r in rows if any(p.endswith("exif_rotated.jpg") for p in r["image_paths"])]
    assert len(rotated_boxes) >= 3
    for x1, y1, x2, y2 in rotated_boxes:
        assert x2 <= upright.width + 1 and y2 <= upright.height + 1
        assert (y2 - y1) / (x2 - x1) > 0.8  # faces upright are taller than wide, not lying on their side
    # the 7200-px copy was decoded at reduced scale, yet its boxes are in its own (original) pixels
    factor = 7200 / upright.width
    huge_boxes = sorted(r["bbox"] for r in rows if any(p.endswith("huge_valid.jpg") for p in r["image_paths"]))
    assert len(huge_boxes) == len(rotated_boxes)
    from tests.model.test_detection import iou

    for huge, small in zip(huge_boxes, sorted(rotated_boxes), strict=True):
        assert iou([v / factor for v in huge], small) > 0.7


def test_walking_never_follows_directory_loops(tmp_path: Path):
    from facesearch.ingest.images import iter_image_files
    from facesearch.settings import ImageSettings

    (tmp_path / "a").mkdir()
    os.symlink(tmp_path, tmp_path / "a" / "loop")
    Image.new("RGB", (40, 40)).save(tmp_path / "a" / "x.jpg")
    found = list(iter_image_files([tmp_path], ImageSettings()))
    assert found == [tmp_path / "a" / "x.jpg"]


def test_image_modes_decode_to_the_same_picture(samples: Path):
    """CMYK, 16-bit, palette and RGBA encodings of one photo decode to (nearly) the same RGB pixels."""
    from facesearch.ingest.images import decode_image
    from facesearch.settings import ImageSettings

    face = samples / "johns" / "John_Simm" / "000288_00470387.jpg"
    reference = np.asarray(Image.open(face).convert("RGB"), dtype=float)
    rgb = Image.open(face).convert("RGB")
    buf = io.BytesIO()
    rgb.convert("RGBA").save(buf, "PNG")
    for data in (buf.getvalue(), jpeg_bytes(rgb, quality=95)):
        decoded = np.asarray(decode_image(data, ImageSettings()).image, dtype=float)
        assert np.abs(decoded - reference).mean() < 4
