"""Characterization and classification (issue 4)."""

from __future__ import annotations

from dscope.params import StrictModel


class ClassificationParams(StrictModel):
    """Settings section; filled in by its issue."""
