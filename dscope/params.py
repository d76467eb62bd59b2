"""Base class for every configuration section.

Sections are pydantic models that reject unknown keys and wrong types, so a
typo in ``config.json`` is an error naming the key, never a silently ignored
setting.  Each subsystem defines its own section next to the code that uses it.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Immutable, unknown-key-rejecting pydantic model."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)
