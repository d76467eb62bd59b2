"""Camera settings (issue 7)."""

from __future__ import annotations

from dscope.params import StrictModel


class CameraConfig(StrictModel):
    """Settings section; filled in by its issue."""
