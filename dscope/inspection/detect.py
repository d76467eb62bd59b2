"""Defect detection (issue 4)."""

from __future__ import annotations

from dscope.params import StrictModel


class DetectionParams(StrictModel):
    """Settings section; filled in by its issue."""
