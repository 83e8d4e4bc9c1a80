"""User-facing errors of the analysis layer (the CLI turns them into one line and exit code 2)."""

from __future__ import annotations

from tort_core.errors import TortError


class AnalysisError(TortError):
    """A request the results cannot answer: unknown recipe, dataset or metric."""


class ResultsNotFound(AnalysisError):
    """The results directory is missing or holds no Parquet store."""
