"""Fiber localization (issue 3)."""

from __future__ import annotations

from dscope.params import StrictModel


class LocalizationParams(StrictModel):
    """Settings section; filled in by its issue."""
