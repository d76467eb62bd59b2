"""Shared fixtures. Images come from the project's own generator (seeded)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def config():
    from dscope.config import load_config

    return load_config()


@pytest.fixture()
def config_data() -> dict:
    """The shipped config as a fresh, mutable dict."""
    return json.loads((REPO / "config" / "config.json").read_text())
