"""Data-quality gate built on great-expectations (GX Core 1.x).

Two suites guard the reindex flow before anything is promoted:

* ``image_manifest`` checks the scanned dataset folder (one row per candidate image file):
  enough files decode, formats and sizes are sane, paths are unique.
* ``embeddings`` checks the encoder's output (one row per detected face, plus one row per
  image with its face count): unit-norm vectors of the expected dimension, no NaNs,
  confident detections, and plausible faces-per-image statistics.

Each check is declared once in a small table (:class:`_Check`) and turned into a GX
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

import logging
import math
import os
import threading
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from facesearch.errors import FaceSearchError

if TYPE_CHECKING:
    import pandas as pd

    from facesearch.settings import Settings

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = ("path", "sha256", "format", "width", "height", "file_bytes", "readable", "reason")
FACES_COLUMNS = ("image_sha256", "face_index", "dim", "norm", "has_nan", "det_prob")
IMAGES_COLUMNS = ("image_sha256", "n_faces")
EXAMPLES = 10  # unexpected values / rows kept per expectation
_KEY = "facesearch_check"  # meta key tying a GX result back to its _Check

_LOCK = threading.RLock()
_batch_definitions: dict[str, Any] = {}  # GX batch definition per frame, on one ephemeral context
_datasource: Any = None


@dataclass(frozen=True)
class ExpectationOutcome:
    """The result of one expectation, reduced to what a person or a metrics file needs."""

    expectation: str
    column: str | None
    blocking: bool
    success: bool
    observed: dict
    description: str


@dataclass(frozen=True)
class ValidationReport:
    """All outcomes of one suite; ``success`` is False iff a blocking expectation failed."""

    suite: str
    success: bool
    rows: int
    outcomes: list[ExpectationOutcome] = field(default_factory=list)

    def failed(self) -> list[ExpectationOutcome]:
        """Blocking expectations that failed."""
        return [o for o in self.outcomes if o.blocking and not o.success]

    def warnings(self) -> list[ExpectationOutcome]:
        """Non-blocking (flagged) expectations that failed."""
        return [o for o in self.outcomes if not o.blocking and not o.success]

    def to_dict(self) -> dict:
        """A JSON-serialisable dict (for ``data/reports`` and MLflow)."""
        return {
            "suite": self.suite,
            "success": self.success,
            "rows": self.rows,
            "failed": len(self.failed()),
            "warnings": len(self.warnings()),
            "outcomes": [asdict(o) for o in self.outcomes],
        }

    def to_markdown(self) -> str:
        """A readable report: verdict, one table row per expectation, then failures with examples."""
        verdict = "PASSED" if self.success else "FAILED"
        lines = [
            f"# Data validation `{self.suite}`: {verdict}",
            "",
            f"{self.rows} rows, {len(self.outcomes)} expectations, "
            f"{len(self.failed())} failed, {len(self.warnings())} warning(s).",
            "",
            "| | expectation | column | observed |",
            "|---|---|---|---|",
        ]
        for o in self.outcomes:
            status = "ok" if o.success else ("FAIL" if o.blocking else "warn")
            lines.append(
                f"| {status} | {_md(o.description)} (`{o.expectation}`) | {_md(o.column or '')} | {_md(_summary(o.observed))} |"
            )
        for title, items in (("Failures", self.failed()), ("Warnings", self.warnings())):
            if items:
                lines += ["", f"## {title}", ""]
                lines += [f"- **{o.description}** (`{o.expectation}`): {_summary(o.observed)}{_examples(o.observed)}" for o in items]
        return "\n".join(lines) + "\n"


class ValidationFailedError(FaceSearchError):
    """A suite had blocking failures; the full report is attached as ``.report``."""

    def __init__(self, report: ValidationReport) -> None:
        failed = report.failed()
        names = "; ".join(f"{o.expectation} on {o.column or 'table'} ({o.description})" for o in failed)
        super().__init__(f"{report.suite} validation failed: {len(failed)} blocking expectation(s): {names}")
        self.report = report


def require(report: ValidationReport) -> ValidationReport:
    """Return ``report`` if it passed, else raise :class:`ValidationFailedError`."""
    if not report.success:
        raise ValidationFailedError(report)
    return report


@dataclass(frozen=True)
class _Check:
    """One declarative expectation: the frame it runs on, the GX class name and its kwargs."""

    frame: str
    expectation: str
    kwargs: dict[str, Any]
    description: str
    blocking: bool = True


def validate_manifest(manifest: pd.DataFrame, settings: Settings) -> ValidationReport:
    """Run the ``image_manifest`` suite on a scan of the dataset folder."""
    v = settings.validation
    manifest = _conform(manifest, MANIFEST_COLUMNS, "manifest")
    readable = manifest[manifest["readable"].eq(True)]
    sides = f"between {v.min_side} and {v.max_side} px"
    checks = [
        _Check("all", "ExpectTableRowCountToBeBetween", {"min_value": 1}, "at least one image file"),
        _Check("all", "ExpectColumnValuesToNotBeNull", {"column": "path"}, "every file has a path"),
        _Check("all", "ExpectColumnValuesToBeUnique", {"column": "path"}, "paths are unique"),
        _Check(
            "all",
            "ExpectColumnValuesToBeInSet",
            {"column": "readable", "value_set": [True], "mostly": 1.0 - v.max_unreadable_fraction},
            f"at most {v.max_unreadable_fraction:.1%} of files unreadable",
        ),
        _Check(
            "all",
            "ExpectColumnValuesToBeBetween",
            {"column": "file_bytes", "min_value": v.min_file_bytes, "max_value": v.max_file_bytes},
            f"file size between {v.min_file_bytes} and {v.max_file_bytes} bytes",
        ),
        *(
            _Check("readable", "ExpectColumnValuesToNotBeNull", {"column": c}, f"readable files have a {c}")
            for c in ("sha256", "format", "width", "height")
        ),
        _Check(
            "readable",
            "ExpectColumnValuesToBeInSet",
            {"column": "format", "value_set": list(v.allowed_formats)},
            f"format is one of {', '.join(v.allowed_formats)}",
        ),
        _Check("readable", "ExpectColumnValuesToBeBetween", {"column": "width", "min_value": v.min_side, "max_value": v.max_side}, f"width {sides}"),
        _Check("readable", "ExpectColumnValuesToBeBetween", {"column": "height", "min_value": v.min_side, "max_value": v.max_side}, f"height {sides}"),
        _Check(
            "readable",
            "ExpectColumnValuesToBeUnique",
            {"column": "sha256"},
            "no byte-identical duplicate files",
            blocking=v.fail_on_duplicate_sha256,
        ),
    ]
    frames = {"all": (manifest, ["path"]), "readable": (readable, ["path"])}
    return _run("image_manifest", checks, frames, rows=len(manifest))


def validate_embeddings(
    faces: pd.DataFrame, images: pd.DataFrame, settings: Settings, *, expected_dim: int, min_det_prob: float | None = None
) -> ValidationReport:
    """Run the ``embeddings`` suite on per-face stats and per-image face counts (``rows`` = faces)."""
    v = settings.validation
    min_det = min_det_prob if min_det_prob is not None else (v.min_det_prob if v.min_det_prob is not None else settings.detection.min_det_prob)
    faces = _conform(faces, FACES_COLUMNS, "faces")
    images = _conform(images, IMAGES_COLUMNS, "images")
    lo, hi = 1.0 - v.norm_tolerance, 1.0 + v.norm_tolerance
    checks = [
        _Check("faces", "ExpectTableRowCountToBeBetween", {"min_value": 1}, "at least one face"),
        _Check("faces", "ExpectColumnValuesToBeInSet", {"column": "dim", "value_set": [expected_dim]}, f"embedding dimension is {expected_dim}"),
        _Check("faces", "ExpectColumnValuesToNotBeNull", {"column": "norm"}, "every face has a norm (GX skips NaN in range checks)"),
        _Check("faces", "ExpectColumnValuesToBeBetween", {"column": "norm", "min_value": lo, "max_value": hi}, f"L2 norm between {lo:g} and {hi:g}"),
        _Check("faces", "ExpectColumnValuesToBeInSet", {"column": "has_nan", "value_set": [False]}, "no NaN in any embedding"),
        _Check(
            "faces",
            "ExpectColumnValuesToBeBetween",
            {"column": "det_prob", "min_value": min_det, "max_value": 1.0},
            f"detection probability at least {min_det:g}",
        ),
        _Check(
            "images",
            "ExpectColumnMeanToBeBetween",
            {"column": "n_faces", "min_value": v.min_mean_faces_per_image, "max_value": v.max_mean_faces_per_image},
            f"mean faces per image between {v.min_mean_faces_per_image:g} and {v.max_mean_faces_per_image:g}",
        ),
        _Check(
            "images",
            "ExpectColumnMaxToBeBetween",
            {"column": "n_faces", "max_value": settings.detection.max_faces_per_image},
            f"at most {settings.detection.max_faces_per_image} faces in any image",
        ),
        _Check(
            "images",
            "ExpectColumnValuesToBeBetween",
            {"column": "n_faces", "min_value": 1, "mostly": 1.0 - v.max_no_face_fraction},
            f"at most {v.max_no_face_fraction:.1%} of images without a face",
        ),
    ]
    frames = {"faces": (faces, ["image_sha256", "face_index"]), "images": (images, ["image_sha256"])}
    return _run("embeddings", checks, frames, rows=len(faces))


# --- GX plumbing -------------------------------------------------------------------------


def _gx() -> Any:
    """Import great_expectations with analytics off (the env var must precede the import)."""
    os.environ["GX_ANALYTICS_ENABLED"] = "false"
    import great_expectations as gx

    return gx


def _batch_definition(frame: str) -> Any:
    """A whole-dataframe batch definition for ``frame`` on the per-process ephemeral context."""
    global _datasource
    with _LOCK:
        if _datasource is None:
            gx = _gx()
            from great_expectations.data_context.types.base import (
                DataContextConfig,
                InMemoryStoreBackendDefaults,
                ProgressBarsConfig,
            )

            config = DataContextConfig(
                store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
                analytics_enabled=False,
                progress_bars=ProgressBarsConfig(globally=False),
            )
            context = gx.get_context(mode="ephemeral", project_config=config)
            _datasource = context.data_sources.add_pandas("facesearch")
            log.debug("created great-expectations ephemeral context %s", gx.__version__)
        if frame not in _batch_definitions:
            asset = _datasource.add_dataframe_asset(frame)
            _batch_definitions[frame] = asset.add_batch_definition_whole_dataframe("whole")
        return _batch_definitions[frame]


def _run(
    suite: str,
    checks: list[_Check],
    frames: dict[str, tuple[pd.DataFrame, list[str]]],
    rows: int,
) -> ValidationReport:
    """Validate each frame as one GX batch and merge the outcomes in declaration order."""
    gx = _gx()
    results: dict[int, Any] = {}
    with _LOCK:
        for frame, (df, id_columns) in frames.items():
            batch = _batch_definition(f"{suite}.{frame}").get_batch(batch_parameters={"dataframe": df})
            # Expectations go in through the constructor: suite.add_expectation() would look the
            # (unsaved) suite up in whichever GX context is "current" in this process.
            expectations = [
                getattr(gx.expectations, check.expectation)(**check.kwargs, meta={_KEY: i})
                for i, check in enumerate(checks)
                if check.frame == frame
            ]
            gx_suite = gx.ExpectationSuite(name=f"{suite}.{frame}", expectations=expectations)
            result_format = {
                "result_format": "SUMMARY",
                "partial_unexpected_count": EXAMPLES,
                "unexpected_index_column_names": id_columns,
            }
            # GX returns results in its own order (grouped by metric), so match them by meta key.
            for r in batch.validate(gx_suite, result_format=result_format).results:
                results[r.expectation_config.meta[_KEY]] = r
    outcomes = []
    for i, check in enumerate(checks):
        r = results[i]
        outcomes.append(
            ExpectationOutcome(
                expectation=r.expectation_config.type,
                column=check.kwargs.get("column"),
                blocking=check.blocking,
                success=bool(r.success),
                observed=_observed(r),
                description=check.description,
            )
        )
    report = ValidationReport(suite=suite, success=all(o.success for o in outcomes if o.blocking), rows=rows, outcomes=outcomes)
    for o in report.warnings():
        log.warning("%s: flagged: %s: %s", suite, o.description, _summary(o.observed))
    for o in report.failed():
        log.error("%s: failed: %s: %s", suite, o.description, _summary(o.observed))
    verdict = "passed" if report.success else "FAILED"
    log.info("%s validation %s (%d rows, %d failed, %d warnings)", suite, verdict, rows, len(report.failed()), len(report.warnings()))
    return report


def _conform(df: pd.DataFrame, columns: tuple[str, ...], name: str) -> pd.DataFrame:
    """Add missing columns to an empty frame; a non-empty frame missing columns is a caller bug."""
    missing = [c for c in columns if c not in df.columns]
    if missing and len(df):
        raise ValueError(f"{name} frame is missing column(s): {', '.join(missing)}")
    return df.reindex(columns=[*df.columns, *missing]) if missing else df


def _observed(result: Any) -> dict:
    """The JSON-safe part of a GX result worth keeping: counts, observed value, a few examples."""
    raw = result.result or {}
    keep = ("element_count", "missing_count", "unexpected_count", "unexpected_percent", "observed_value")
    observed = {k: _jsonable(raw[k]) for k in keep if k in raw}
    if "partial_unexpected_list" in raw:
        observed["partial_unexpected_list"] = _jsonable(raw["partial_unexpected_list"][:EXAMPLES])
    if raw.get("partial_unexpected_index_list"):
        observed["examples"] = _jsonable(raw["partial_unexpected_index_list"][:EXAMPLES])
    if error := _error(result.exception_info):
        observed["error"] = error
    return observed


def _error(info: Any) -> str | None:
    """The first exception message in GX's ``exception_info`` (flat, or keyed by metric)."""
    if not isinstance(info, dict):
        return None
    if info.get("raised_exception"):
        return str(info.get("exception_message"))
    return next((str(v.get("exception_message")) for v in info.values() if isinstance(v, dict) and v.get("raised_exception")), None)


def _jsonable(value: Any) -> Any:
    """numpy scalars -> Python, NaN/inf -> strings, containers recursively."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _summary(observed: dict) -> str:
    """One short phrase for the table's ``observed`` column."""
    if "error" in observed:
        return f"error: {observed['error'][:120]}"
    if "observed_value" in observed:
        value = observed["observed_value"]
        return f"observed {value:.4g}" if isinstance(value, float) else f"observed {value}"
    if "unexpected_count" in observed:
        pct = observed.get("unexpected_percent")
        pct_text = f" ({pct:.1f}%)" if isinstance(pct, (int, float)) else ""
        return f"{observed['unexpected_count']} of {observed.get('element_count')} unexpected{pct_text}"
    return ""


def _examples(observed: dict) -> str:
    """``; e.g. ...`` with a few offending rows (or values) for the failure list."""
    rows = observed.get("examples") or observed.get("partial_unexpected_list") or []
    shown = [" ".join(f"{k}={v}" for k, v in r.items()) if isinstance(r, dict) else str(r) for r in rows[:3]]
    return f"; e.g. {'; '.join(shown)}" if shown else ""


def _md(text: str) -> str:
    """Escape a table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")
