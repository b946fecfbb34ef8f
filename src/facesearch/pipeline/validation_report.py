"""What a validation run reports: one outcome per expectation, the suite's verdict, and the error that stops the flow."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from facesearch.errors import FaceSearchError

if TYPE_CHECKING:

    pass


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
    data_docs: str = ""  # GX's own HTML Data Docs of this run (index.html), when they were built

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
            "data_docs": self.data_docs,
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
                f"| {status} | {md_escape(o.description)} (`{o.expectation}`) | {md_escape(o.column or '')} | {md_escape(summarise_observed(o.observed))} |"
            )
        for title, items in (("Failures", self.failed()), ("Warnings", self.warnings())):
            if items:
                lines += ["", f"## {title}", ""]
                lines += [f"- **{o.description}** (`{o.expectation}`): {summarise_observed(o.observed)}{observed_examples(o.observed)}" for o in items]
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


def summarise_observed(observed: dict) -> str:
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


def observed_examples(observed: dict) -> str:
    """``; e.g. ...`` with a few offending rows (or values) for the failure list."""
    rows = observed.get("examples") or observed.get("partial_unexpected_list") or []
    shown = [" ".join(f"{k}={v}" for k, v in r.items()) if isinstance(r, dict) else str(r) for r in rows[:3]]
    return f"; e.g. {'; '.join(shown)}" if shown else ""


def md_escape(text: str) -> str:
    """Escape a table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")
