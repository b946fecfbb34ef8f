"""Checks declared as a small table, run as great-expectations expectations on pandas frames (GX Core 1.x ephemeral context)."""

from __future__ import annotations

import logging
import math
import os
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from facesearch.pipeline.validation_report import ExpectationOutcome, ValidationReport, summarise_observed

if TYPE_CHECKING:
    import pandas as pd


log = logging.getLogger(__name__)


EXAMPLES = 10  # unexpected values / rows kept per expectation


_KEY = "facesearch_check"  # meta key tying a GX result back to its Check


_LOCK = threading.RLock()


_batch_definitions: dict[str, Any] = {}  # GX batch definition per frame, on one ephemeral context


_datasource: Any = None


_context: Any = None


@dataclass(frozen=True)
class Check:
    """One declarative expectation: the frame it runs on, the GX class name and its kwargs."""

    frame: str
    expectation: str
    kwargs: dict[str, Any]
    description: str
    blocking: bool = True


def _gx() -> Any:
    """Import great_expectations with analytics off (the env var must precede the import)."""
    os.environ["GX_ANALYTICS_ENABLED"] = "false"
    import great_expectations as gx

    return gx


def _batch_definition(frame: str) -> Any:
    """A whole-dataframe batch definition for ``frame`` on the per-process ephemeral context."""
    global _datasource, _context
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
            _context = gx.get_context(mode="ephemeral", project_config=config)
            _datasource = _context.data_sources.add_pandas("facesearch")
            log.debug("created great-expectations ephemeral context %s", gx.__version__)
        if frame not in _batch_definitions:
            asset = _datasource.add_dataframe_asset(frame)
            _batch_definitions[frame] = asset.add_batch_definition_whole_dataframe("whole")
        return _batch_definitions[frame]


def run_checks(
    suite: str,
    checks: list[Check],
    frames: dict[str, tuple[pd.DataFrame, list[str]]],
    rows: int,
    docs_dir: Path | None = None,
) -> ValidationReport:
    """Validate each frame as one GX batch and merge the outcomes in declaration order.

    With ``docs_dir``, GX also renders its own HTML Data Docs of these results there (``index.html``).
    """
    gx = _gx()
    results: dict[int, Any] = {}
    suite_results: list[Any] = []
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
            validated = batch.validate(gx_suite, result_format=result_format)
            suite_results.append(validated)
            for r in validated.results:
                results[r.expectation_config.meta[_KEY]] = r
        docs = build_data_docs(docs_dir, suite_results) if docs_dir is not None else ""
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
    report = replace(report, data_docs=docs)
    for o in report.warnings():
        log.warning("%s: flagged: %s: %s", suite, o.description, summarise_observed(o.observed))
    for o in report.failed():
        log.error("%s: failed: %s: %s", suite, o.description, summarise_observed(o.observed))
    verdict = "passed" if report.success else "FAILED"
    log.info("%s validation %s (%d rows, %d failed, %d warnings)", suite, verdict, rows, len(report.failed()), len(report.warnings()))
    return report


def build_data_docs(docs_dir: Path, suite_results: list[Any]) -> str:
    """Store the results in the context's (in-memory) results store and let GX's site builder render them.

    The site is a plain folder of HTML (GX's ``SiteBuilder`` on a filesystem backend); returns its index.html.
    """
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import ExpectationSuiteIdentifier, ValidationResultIdentifier

    docs_dir = Path(docs_dir).resolve()
    site = f"facesearch-{abs(hash(str(docs_dir))):x}"
    if site not in (_context.get_site_names() or []):
        _context.add_data_docs_site(site_name=site, site_config={
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        })
    run = RunIdentifier(run_name="facesearch")
    for result in suite_results:
        key = ValidationResultIdentifier(ExpectationSuiteIdentifier(name=result.suite_name), run_id=run, batch_identifier="whole")
        _context.validation_results_store.set(key, result)
    _context.build_data_docs(site_names=[site])
    index = docs_dir / "index.html"
    log.debug("great-expectations Data Docs: %s", index)
    return str(index)


def conform(df: pd.DataFrame, columns: tuple[str, ...], name: str) -> pd.DataFrame:
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
