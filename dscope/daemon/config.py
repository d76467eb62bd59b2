"""Bench daemon settings (issue 6)."""

from __future__ import annotations

from dscope.params import StrictModel


class DaemonConfig(StrictModel):
    """Settings section; filled in by its issue."""
