"""Reading the project's JSON files (config, rule sets, calibration) with errors that name the file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from dscope.errors import DScopeError


def read_json_file(
    path: str | os.PathLike,
    error_cls: type[DScopeError],
    code: str,
    *,
    what: str = "file",
    missing_code: str | None = None,
) -> Any:
    """Parse a JSON file; raise ``error_cls(code, ...)`` naming the file (and the line of a syntax error).

    ``missing_code`` gives a missing file its own code (e.g. ``rule_set_unknown``).

    Examples
    --------
    >>> from dscope.errors import ConfigError
    >>> try:
    ...     read_json_file("/no/such.json", ConfigError, "config_invalid", what="config file")
    ... except ConfigError as exc:
    ...     print(exc.code, "no such config file" in exc.message)
    config_invalid True
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error_cls(missing_code or code, f"{p}: no such {what}", file=str(p)) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise error_cls(code, f"{p}: cannot read {what}: {reason}", file=str(p)) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error_cls(
            code, f"{p}: not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}", file=str(p)
        ) from None
