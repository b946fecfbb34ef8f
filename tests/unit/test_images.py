import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facesearch.errors import ImageError
from facesearch.ingest.images import SkippedFile, decode_image, iter_image_files, load_image, to_rgb
from facesearch.settings import ImageSettings
from tests.imagefactory import exif_rotated_jpeg, jpeg_bytes, png_bomb_bytes, sixteen_bit_png, truncated_jpeg

SETTINGS = ImageSettings()


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty_file"),
        (b"hello, I am a text file pretending to be a JPEG\n", "not_an_image"),
        (png_bomb_bytes(), "too_many_pixels"),
    ],
)
def test_bad_bytes_get_a_reason(data, reason):
    with pytest.raises(ImageError) as err:
        decode_image(data, SETTINGS)
    assert err.value.reason == reason
    assert err.value.exit_code == 2


def test_truncated_jpeg(johns: Path):
    src = next(johns.glob("*/*.jpg"))
    with pytest.raises(ImageError) as err:
        decode_image(truncated_jpeg(src), SETTINGS)
    assert err.value.reason == "truncated"


def test_pixel_limit_is_configurable():
    data = _png(Image.new("RGB", (100, 100)))
    assert decode_image(data, SETTINGS).size == (100, 100)
    with pytest.raises(ImageError, match="too_many_pixels"):
        decode_image(data, ImageSettings(max_pixels=9999))


@pytest.mark.parametrize(
    "img",
    [
        Image.new("L", (40, 30), 128),
        Image.new("CMYK", (40, 30), (0, 255, 255, 0)),
        Image.new("RGBA", (40, 30), (255, 0, 0, 0)),
        Image.new("LA", (40, 30), (10, 255)),
        Image.new("1", (40, 30), 1),
    ],
    ids=lambda i: i.mode,
)
def test_every_mode_becomes_rgb(img):
    rgb = to_rgb(img)
    assert rgb.mode == "RGB" and rgb.size == (40, 30)


def test_transparent_pixels_become_white_and_cmyk_colours_survive():
    assert to_rgb(Image.new("RGBA", (2, 2), (255, 0, 0, 0))).getpixel((0, 0)) == (255, 255, 255)
    cyan = decode_image(jpeg_bytes(Image.new("CMYK", (8, 8), (255, 0, 0, 0))), SETTINGS).image.getpixel((4, 4))
    assert cyan[0] < 60 and cyan[1] > 200 and cyan[2] > 200


def test_palette_with_transparency():
    pal = Image.new("P", (10, 10), 1)
    pal.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    pal.info["transparency"] = 1
    assert to_rgb(pal).getpixel((0, 0)) == (255, 255, 255)


def test_sixteen_bit_png_scaled_not_clipped(johns: Path):
    src = next(johns.glob("*/*.jpg"))
    loaded = decode_image(sixteen_bit_png(src), SETTINGS)
    arr = np.asarray(loaded.image)
    assert loaded.source_mode.startswith("I")
    expected = np.asarray(Image.open(src).convert("L"))
    assert np.abs(arr[..., 0].astype(int) - expected.astype(int)).max() <= 1


def test_exif_orientation_applied(johns: Path):
    src = next(johns.glob("*/*.jpg"))
    original = Image.open(src)
    loaded = decode_image(exif_rotated_jpeg(src), SETTINGS)
    assert loaded.size == original.size  # rotated back upright
    diff = np.abs(np.asarray(loaded.image, dtype=int) - np.asarray(original.convert("RGB"), dtype=int)).mean()
    assert diff < 12  # JPEG noise only, not a rotated picture


def test_animated_gif_uses_first_frame():
    frames = [Image.new("RGB", (20, 20), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    assert decode_image(buf.getvalue(), SETTINGS).image.getpixel((5, 5))[0] > 200


def test_same_bytes_same_hash_and_phash():
    data = jpeg_bytes(Image.new("RGB", (64, 64), (10, 20, 30)))
    a, b = decode_image(data, SETTINGS), decode_image(data, SETTINGS)
    assert a.sha256 == b.sha256 and len(a.sha256) == 64 and a.phash == b.phash


def test_walk_reports_links_and_unsupported_formats(tmp_path: Path):
    (tmp_path / "sub").mkdir()
    good = tmp_path / "sub" / "a.jpg"
    good.write_bytes(jpeg_bytes(Image.new("RGB", (8, 8))))
    (tmp_path / "notes.txt").write_text("ignored")
    (tmp_path / "phone.HEIC").write_bytes(b"\x00\x00\x00\x18ftypheic")
    os.symlink(tmp_path / "missing.jpg", tmp_path / "dangling.jpg")
    os.symlink(tmp_path / "loop_b.jpg", tmp_path / "loop_a.jpg")
    os.symlink(tmp_path / "loop_a.jpg", tmp_path / "loop_b.jpg")
    os.symlink(tmp_path, tmp_path / "sub" / "back_to_root")  # directory loop: not followed
    (tmp_path / "folder.jpg").mkdir()  # a directory named like an image is walked, not opened
    items = list(iter_image_files([tmp_path], SETTINGS))
    files = [i for i in items if isinstance(i, Path)]
    skipped = {i.path.name: i.reason for i in items if isinstance(i, SkippedFile)}
    assert files == [good]
    assert skipped == {"dangling.jpg": "dangling_symlink", "loop_a.jpg": "symlink_loop", "loop_b.jpg": "symlink_loop", "phone.HEIC": "unsupported_format"}


def test_load_image_refuses_directories_and_big_files(tmp_path: Path):
    with pytest.raises(ImageError, match="not_a_file"):
        load_image(tmp_path, SETTINGS)
    big = tmp_path / "big.jpg"
    big.write_bytes(b"\xff" * 2000)
    with pytest.raises(ImageError, match="file_too_large"):
        load_image(big, ImageSettings(max_file_bytes=1000))


def test_big_jpeg_decodes_at_reduced_scale_with_original_size_kept():
    rng = np.random.default_rng(0)
    big = Image.fromarray((rng.random((300, 400, 3)) * 255).astype(np.uint8)).resize((4000, 3000))
    loaded = decode_image(jpeg_bytes(big), ImageSettings(draft_side=1000))
    assert loaded.size == (4000, 3000)  # the photo's size, for boxes and the manifest
    assert loaded.image.size == (1000, 750) and loaded.scale == 0.25  # libjpeg's 1/4 DCT scaling
    full = decode_image(jpeg_bytes(big), ImageSettings(draft_side=0))
    assert full.image.size == (4000, 3000) and full.scale == 1.0
    assert full.sha256 == loaded.sha256


def test_reduced_decode_with_exif_rotation_keeps_upright_original_size(johns: Path):
    src = next(johns.glob("*/*.jpg"))
    rotated = decode_image(exif_rotated_jpeg(src), ImageSettings(draft_side=60))
    assert rotated.size == Image.open(src).size
    assert rotated.image.width / rotated.image.height == pytest.approx(rotated.size[0] / rotated.size[1], rel=0.05)


def _oriented_jpeg(src: Path, orientation: int, grey: bool = False) -> bytes:
    img = Image.open(src).convert("L" if grey else "RGB")
    exif = Image.Exif()
    exif[0x0112] = orientation
    return jpeg_bytes(img, exif=exif.tobytes())


@pytest.mark.parametrize(("orientation", "grey", "draft_side"), [*((o, False, 0) for o in range(1, 9)), (6, True, 0), (8, False, 100)])
def test_libjpeg_turbo_path_matches_pillow(johns: Path, monkeypatch: pytest.MonkeyPatch, orientation: int, grey: bool, draft_side: int):
    """JPEGs decode through simplejpeg; the result (pixels, size, hashes) is exactly Pillow's, every EXIF orientation."""
    from facesearch.ingest import images

    data = _oriented_jpeg(next(johns.glob("*/*.jpg")), orientation, grey)
    settings = ImageSettings(draft_side=draft_side)
    pillow_decode = images._pillow_decode
    with monkeypatch.context() as patch:
        patch.setattr(images, "_pillow_decode", lambda *a: pytest.fail("the JPEG fell back to Pillow"))
        fast = decode_image(data, settings)
    monkeypatch.setattr(images, "TURBO_FORMATS", frozenset())  # Pillow's own decode, the reference
    assert images._pillow_decode is pillow_decode
    slow = decode_image(data, settings)
    assert fast.pixels.shape == slow.pixels.shape and fast.pixels.dtype == np.uint8
    assert np.array_equal(fast.pixels, slow.pixels)
    assert (fast.size, fast.scale, fast.sha256, fast.phash) == (slow.size, slow.scale, slow.sha256, slow.phash)
