"""The great-expectations data-quality gate, on real GX (ephemeral context) and hand-built frames."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from facesearch.errors import FaceSearchError
from facesearch.pipeline.validate import (
    ValidationFailedError,
    ValidationReport,
    require,
    validate_embeddings,
    validate_manifest,
)
from facesearch.settings import load_settings

DIM = 128


def settings(**validation):
    return load_settings(overrides={"validation": validation})


def image_row(i: int, **changes) -> dict:
    row = {
        "path": f"people/p{i}.jpg",
        "sha256": f"{i:064x}",
        "format": "JPEG",
        "width": 640,
        "height": 480,
        "file_bytes": 50_000,
        "readable": True,
        "reason": "",
    }
    return {**row, **changes}


def unreadable_row(i: int) -> dict:
    return image_row(i, sha256=None, format=None, width=None, height=None, file_bytes=5_000, readable=False, reason="truncated")


def manifest(rows: list[dict], nullable_ints: bool = True) -> pd.DataFrame:
    """Like facesearch.ingest.dataset's manifest: nullable Int64 sizes (pd.NA when unreadable)."""
    df = pd.DataFrame(rows)
    return df.astype({"width": "Int64", "height": "Int64"}) if nullable_ints else df


def clean_manifest(n: int = 20) -> pd.DataFrame:
    return manifest([image_row(i) for i in range(n)])


def outcome(report: ValidationReport, expectation: str, column: str | None):
    matches = [o for o in report.outcomes if o.expectation == expectation and o.column == column]
    assert len(matches) == 1, (expectation, column, report.outcomes)
    return matches[0]


def names(outcomes) -> set[tuple[str, str | None]]:
    return {(o.expectation, o.column) for o in outcomes}


# --- manifest ------------------------------------------------------------------------------


def test_clean_manifest_passes_and_markdown_lists_every_expectation():
    report = validate_manifest(clean_manifest(), settings())
    assert report.suite == "image_manifest"
    assert report.success and report.rows == 20
    assert report.failed() == [] and report.warnings() == []
    md = report.to_markdown()
    assert "PASSED" in md and "FAILED" not in md
    assert "| | expectation | column | observed |" in md
    for o in report.outcomes:
        assert o.expectation in md and o.description in md
    expected = {
        ("expect_table_row_count_to_be_between", None),
        ("expect_column_values_to_be_in_set", "readable"),
        ("expect_column_values_to_be_in_set", "format"),
        ("expect_column_values_to_be_between", "width"),
        ("expect_column_values_to_be_between", "height"),
        ("expect_column_values_to_be_between", "file_bytes"),
        ("expect_column_values_to_be_unique", "path"),
        ("expect_column_values_to_not_be_null", "path"),
        ("expect_column_values_to_be_unique", "sha256"),
    }
    assert expected <= names(report.outcomes)


def test_unreadable_fraction_above_limit_fails_below_passes():
    s = settings(max_unreadable_fraction=0.1)
    # 1 of 20 unreadable (5%) passes; the None format/size/sha256 of that row count as nothing.
    ok = validate_manifest(manifest([image_row(i) for i in range(19)] + [unreadable_row(19)]), s)
    assert ok.success, ok.to_markdown()
    assert outcome(ok, "expect_column_values_to_be_in_set", "readable").observed["unexpected_count"] == 1
    # 4 of 20 unreadable (20%) fails, and only on that expectation.
    bad = validate_manifest(manifest([image_row(i) for i in range(16)] + [unreadable_row(i) for i in range(16, 20)]), s)
    assert not bad.success
    assert names(bad.failed()) == {("expect_column_values_to_be_in_set", "readable")}
    assert "FAILED" in bad.to_markdown()


@pytest.mark.parametrize("nullable_ints", [True, False], ids=["Int64-NA", "float-NaN"])
def test_nulls_of_unreadable_rows_are_not_failures(nullable_ints):
    """GX skips nulls, and readable-only checks run on readable rows: 100% unreadable allowed -> pass."""
    rows = [image_row(0)] + [unreadable_row(i) for i in range(1, 4)]
    report = validate_manifest(manifest(rows, nullable_ints), settings(max_unreadable_fraction=1.0))
    assert report.success, report.to_markdown()
    width = outcome(report, "expect_column_values_to_be_between", "width")
    assert width.success and width.observed["element_count"] == 1  # only the readable row was checked
    assert outcome(report, "expect_column_values_to_be_unique", "sha256").success  # three None sha256 are not duplicates


def test_readable_row_with_missing_value_fails():
    report = validate_manifest(manifest([image_row(0), image_row(1, width=None)]), settings())
    assert not report.success
    assert names(report.failed()) == {("expect_column_values_to_not_be_null", "width")}


def test_bad_format_and_too_small_width_fail_with_examples():
    rows = [image_row(i) for i in range(10)]
    rows[3] = image_row(3, format="XBM")
    rows[7] = image_row(7, width=10)
    report = validate_manifest(manifest(rows), settings())
    assert not report.success
    assert names(report.failed()) == {
        ("expect_column_values_to_be_in_set", "format"),
        ("expect_column_values_to_be_between", "width"),
    }
    width = outcome(report, "expect_column_values_to_be_between", "width")
    assert width.observed["unexpected_count"] == 1
    assert width.observed["partial_unexpected_list"] == [10]
    assert width.observed["examples"][0]["path"] == "people/p7.jpg"
    md = report.to_markdown()
    assert "## Failures" in md and "people/p7.jpg" in md and "XBM" in md


def test_file_size_and_duplicate_path_fail():
    rows = [image_row(i) for i in range(5)] + [image_row(0, sha256="f" * 64), image_row(5, file_bytes=10)]
    report = validate_manifest(manifest(rows), settings())
    assert names(report.failed()) == {
        ("expect_column_values_to_be_unique", "path"),
        ("expect_column_values_to_be_between", "file_bytes"),
    }


def test_duplicate_sha256_is_a_warning_unless_configured_to_fail():
    rows = [image_row(i) for i in range(5)] + [image_row(5, sha256=f"{0:064x}")]
    report = validate_manifest(manifest(rows), settings())
    assert report.success
    assert names(report.warnings()) == {("expect_column_values_to_be_unique", "sha256")}
    assert "## Warnings" in report.to_markdown()

    strict = validate_manifest(manifest(rows), settings(fail_on_duplicate_sha256=True))
    assert not strict.success
    assert names(strict.failed()) == {("expect_column_values_to_be_unique", "sha256")}


def test_empty_manifest_fails_row_count():
    report = validate_manifest(pd.DataFrame([]), settings())
    assert not report.success and report.rows == 0
    assert names(report.failed()) == {("expect_table_row_count_to_be_between", None)}


def test_non_empty_frame_missing_a_column_is_a_caller_error():
    with pytest.raises(ValueError, match="width"):
        validate_manifest(clean_manifest().drop(columns=["width"]), settings())


# --- embeddings ----------------------------------------------------------------------------


def faces_frame(n_images: int = 10, faces_per_image: int = 2, **changes) -> pd.DataFrame:
    rows = [
        {"image_sha256": f"{i:064x}", "face_index": j, "dim": DIM, "norm": 1.0, "has_nan": False, "det_prob": 0.99}
        for i in range(n_images)
        for j in range(faces_per_image)
    ]
    df = pd.DataFrame(rows)
    for column, (row, value) in changes.items():
        df.loc[row, column] = value
    return df


def images_frame(counts: list[int]) -> pd.DataFrame:
    return pd.DataFrame({"image_sha256": [f"{i:064x}" for i in range(len(counts))], "n_faces": counts})


def check_embeddings(faces: pd.DataFrame, images: pd.DataFrame | None = None, s=None, dim: int = DIM) -> ValidationReport:
    return validate_embeddings(faces, images if images is not None else images_frame([2] * 10), s or settings(), expected_dim=dim)


def test_clean_embeddings_pass():
    report = check_embeddings(faces_frame())
    assert report.suite == "embeddings" and report.rows == 20
    assert report.success, report.to_markdown()
    assert all(o.blocking for o in report.outcomes)
    mean = outcome(report, "expect_column_mean_to_be_between", "n_faces")
    assert mean.observed["observed_value"] == pytest.approx(2.0)
    assert "PASSED" in report.to_markdown()


@pytest.mark.parametrize(
    ("change", "expectation", "column"),
    [
        ({"has_nan": (3, True)}, "expect_column_values_to_be_in_set", "has_nan"),
        ({"norm": (3, 1.01)}, "expect_column_values_to_be_between", "norm"),
        ({"dim": (3, 512)}, "expect_column_values_to_be_in_set", "dim"),
        ({"det_prob": (3, 0.5)}, "expect_column_values_to_be_between", "det_prob"),
    ],
)
def test_one_bad_face_fails(change, expectation, column):
    report = check_embeddings(faces_frame(**change))
    assert not report.success
    assert names(report.failed()) == {(expectation, column)}
    assert outcome(report, expectation, column).observed["examples"][0]["face_index"] == 1  # row 3 = image 1, face 1


def test_wrong_expected_dim_fails_every_row():
    report = check_embeddings(faces_frame(), dim=512)
    failed = outcome(report, "expect_column_values_to_be_in_set", "dim")
    assert not failed.success and failed.observed["unexpected_count"] == 20


def test_images_without_faces_fail_no_face_fraction_and_mean():
    report = check_embeddings(faces_frame(n_images=1, faces_per_image=1), images_frame([0] * 9 + [1]))
    assert not report.success
    assert names(report.failed()) == {
        ("expect_column_values_to_be_between", "n_faces"),
        ("expect_column_mean_to_be_between", "n_faces"),
    }
    # within the limit: 4 of 10 images without a face, mean 1.2
    ok = check_embeddings(faces_frame(n_images=6, faces_per_image=2), images_frame([0] * 4 + [2] * 6))
    assert ok.success, ok.to_markdown()


def test_too_many_faces_in_one_image_fails_max():
    s = load_settings(overrides={"detection": {"max_faces_per_image": 4}})
    report = check_embeddings(faces_frame(), images_frame([2] * 9 + [5]), s)
    assert names(report.failed()) == {("expect_column_max_to_be_between", "n_faces")}


def test_validation_does_not_depend_on_which_gx_context_is_current():
    """gx.get_context() elsewhere in the process makes another context current; ours keeps working."""
    import great_expectations as gx

    validate_manifest(clean_manifest(), settings())  # our context exists
    other = gx.get_context(mode="ephemeral")
    assert validate_manifest(clean_manifest(), settings()).success
    assert other.suites.all() == [] and not other.data_sources.all()


def test_no_faces_at_all_fails_row_count():
    empty = pd.DataFrame(columns=["image_sha256", "face_index", "dim", "norm", "has_nan", "det_prob"])
    report = check_embeddings(empty, images_frame([0] * 10))
    assert ("expect_table_row_count_to_be_between", None) in names(report.failed())


# --- require / serialisation ---------------------------------------------------------------


def test_require_raises_with_report_attached_and_reports_serialise():
    passing = check_embeddings(faces_frame())
    assert require(passing) is passing

    report = check_embeddings(faces_frame(has_nan=(0, True), norm=(0, float("nan"))))
    with pytest.raises(ValidationFailedError) as info:
        require(report)
    err = info.value
    assert isinstance(err, FaceSearchError)
    assert err.report is report
    # GX skips the NaN norm in the range check; the not-null check and has_nan catch it.
    assert names(report.failed()) == {
        ("expect_column_values_to_be_in_set", "has_nan"),
        ("expect_column_values_to_not_be_null", "norm"),
    }
    assert outcome(report, "expect_column_values_to_be_between", "norm").success
    assert str(err).startswith("embeddings validation failed: 2 blocking expectation(s)")
    assert "expect_column_values_to_be_in_set on has_nan" in str(err)

    for r in (report, validate_manifest(manifest([image_row(0), unreadable_row(1), image_row(2, width=float("nan"))]), settings())):
        data = json.loads(json.dumps(r.to_dict(), allow_nan=False))
        assert data["suite"] == r.suite and data["success"] is r.success
        assert len(data["outcomes"]) == len(r.outcomes)
