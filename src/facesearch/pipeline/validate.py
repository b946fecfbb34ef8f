"""Data-quality gate built on great-expectations (GX Core 1.x).

Two suites guard the reindex flow before anything is promoted:

* ``image_manifest`` checks the scanned dataset folder (one row per candidate image file):
  enough files decode, formats and sizes are sane, paths are unique.
* ``embeddings`` checks the encoder's output (one row per detected face, plus one row per
  image with its face count): unit-norm vectors of the expected dimension, no NaNs,
  confident detections, and plausible faces-per-image statistics.

Each check is declared once in a small table (:class:`~facesearch.pipeline.gx_runner.Check`) and turned into a GX
expectation; every table (frame) becomes one GX batch, and the outcomes of all batches are
merged into one :class:`ValidationReport`.

Blocking vs flagged: a *blocking* expectation guards an invariant the index relies on
(a wrong dimension or a NaN vector breaks search), so one failure fails the suite and
:func:`require` stops the flow. A *flagged* expectation describes something a person
should look at but that does no harm to the index (byte-identical duplicate files are
simply stored twice), so it is reported as a warning unless the settings make it blocking.

Nulls: GX column-value expectations skip nulls (they count neither as expected nor as
unexpected). Checks that only make sense for decodable files (format, size, sha256) are
therefore run on a separate batch holding only ``readable`` rows, where explicit
not-null expectations make sure a readable row cannot slip through with a missing value.
Likewise a NaN ``norm`` would pass the norm range check unseen, so ``norm`` is also
expected not null (besides the explicit ``has_nan`` flag).

GX is imported lazily (the import takes seconds) and its ephemeral context is created
once per process on first use, with analytics and progress bars off.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from facesearch.models.encoders import backend_for, min_detection_score
from facesearch.pipeline.gx_runner import Check, conform, run_checks
from facesearch.pipeline.validation_report import ValidationFailedError, ValidationReport, require

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd

    from facesearch.settings import Settings



__all__ = ["ValidationFailedError", "ValidationReport", "require", "validate_embeddings", "validate_manifest"]


MANIFEST_COLUMNS = ("path", "sha256", "format", "width", "height", "file_bytes", "readable", "reason")


FACES_COLUMNS = ("image_sha256", "face_index", "dim", "norm", "has_nan", "det_prob")


IMAGES_COLUMNS = ("image_sha256", "n_faces")


def validate_manifest(manifest: pd.DataFrame, settings: Settings, docs_dir: Path | None = None) -> ValidationReport:
    """Run the ``image_manifest`` suite on a scan of the dataset folder (GX Data Docs into ``docs_dir``, if given)."""
    v = settings.validation
    manifest = conform(manifest, MANIFEST_COLUMNS, "manifest")
    readable = manifest[manifest["readable"].eq(True)]
    sides = f"between {v.min_side} and {v.max_side} px"
    checks = [
        Check("all", "ExpectTableRowCountToBeBetween", {"min_value": 1}, "at least one image file"),
        Check("all", "ExpectColumnValuesToNotBeNull", {"column": "path"}, "every file has a path"),
        Check("all", "ExpectColumnValuesToBeUnique", {"column": "path"}, "paths are unique"),
        Check(
            "all",
            "ExpectColumnValuesToBeInSet",
            {"column": "readable", "value_set": [True], "mostly": 1.0 - v.max_unreadable_fraction},
            f"at most {v.max_unreadable_fraction:.1%} of files unreadable",
        ),
        Check(
            "all",
            "ExpectColumnValuesToBeBetween",
            {"column": "file_bytes", "min_value": v.min_file_bytes, "max_value": v.max_file_bytes},
            f"file size between {v.min_file_bytes} and {v.max_file_bytes} bytes",
        ),
        *(
            Check("readable", "ExpectColumnValuesToNotBeNull", {"column": c}, f"readable files have a {c}")
            for c in ("sha256", "format", "width", "height")
        ),
        Check(
            "readable",
            "ExpectColumnValuesToBeInSet",
            {"column": "format", "value_set": list(v.allowed_formats)},
            f"format is one of {', '.join(v.allowed_formats)}",
        ),
        Check("readable", "ExpectColumnValuesToBeBetween", {"column": "width", "min_value": v.min_side, "max_value": v.max_side}, f"width {sides}"),
        Check("readable", "ExpectColumnValuesToBeBetween", {"column": "height", "min_value": v.min_side, "max_value": v.max_side}, f"height {sides}"),
        Check(
            "readable",
            "ExpectColumnValuesToBeUnique",
            {"column": "sha256"},
            "no byte-identical duplicate files",
            blocking=v.fail_on_duplicate_sha256,
        ),
    ]
    frames = {"all": (manifest, ["path"]), "readable": (readable, ["path"])}
    return run_checks("image_manifest", checks, frames, rows=len(manifest), docs_dir=docs_dir)


def validate_embeddings(
    faces: pd.DataFrame, images: pd.DataFrame, settings: Settings, *, expected_dim: int, encoder_id: str | None = None,
    docs_dir: Path | None = None,
) -> ValidationReport:
    """Run the ``embeddings`` suite on per-face stats and per-image face counts (``rows`` = faces)."""
    v = settings.validation
    min_det = v.min_det_prob
    if min_det is None:  # the detector's own threshold: what it may legitimately have stored
        min_det = min_detection_score(settings, backend_for(encoder_id) if encoder_id else None)
    faces = conform(faces, FACES_COLUMNS, "faces")
    images = conform(images, IMAGES_COLUMNS, "images")
    lo, hi = 1.0 - v.norm_tolerance, 1.0 + v.norm_tolerance
    checks = [
        Check("faces", "ExpectTableRowCountToBeBetween", {"min_value": 1}, "at least one face"),
        Check("faces", "ExpectColumnValuesToBeInSet", {"column": "dim", "value_set": [expected_dim]}, f"embedding dimension is {expected_dim}"),
        Check("faces", "ExpectColumnValuesToNotBeNull", {"column": "norm"}, "every face has a norm (GX skips NaN in range checks)"),
        Check("faces", "ExpectColumnValuesToBeBetween", {"column": "norm", "min_value": lo, "max_value": hi}, f"L2 norm between {lo:g} and {hi:g}"),
        Check("faces", "ExpectColumnValuesToBeInSet", {"column": "has_nan", "value_set": [False]}, "no NaN in any embedding"),
        Check(
            "faces",
            "ExpectColumnValuesToBeBetween",
            {"column": "det_prob", "min_value": min_det, "max_value": 1.0},
            f"detection probability at least {min_det:g}",
        ),
        Check(
            "images",
            "ExpectColumnMeanToBeBetween",
            {"column": "n_faces", "min_value": v.min_mean_faces_per_image, "max_value": v.max_mean_faces_per_image},
            f"mean faces per image between {v.min_mean_faces_per_image:g} and {v.max_mean_faces_per_image:g}",
        ),
        Check(
            "images",
            "ExpectColumnMaxToBeBetween",
            {"column": "n_faces", "max_value": settings.detection.max_faces_per_image},
            f"at most {settings.detection.max_faces_per_image} faces in any image",
        ),
        Check(
            "images",
            "ExpectColumnValuesToBeBetween",
            {"column": "n_faces", "min_value": 1, "mostly": 1.0 - v.max_no_face_fraction},
            f"at most {v.max_no_face_fraction:.1%} of images without a face",
        ),
    ]
    frames = {"faces": (faces, ["image_sha256", "face_index"]), "images": (images, ["image_sha256"])}
    return run_checks("embeddings", checks, frames, rows=len(faces), docs_dir=docs_dir)
