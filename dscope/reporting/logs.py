"""Logging setup: structlog on top of the standard library.

* console (stderr): human-readable lines (``structlog.dev.ConsoleRenderer``),
  or JSON lines with ``json_console=True`` (daemon under systemd);
* log file: one JSON object per line with ``timestamp`` (ISO 8601, UTC),
  ``level``, ``event``, ``logger``, ``pid`` and every key-value bound or passed.

NumPy scalars and small arrays are written as JSON numbers / lists (large
arrays as a shape/dtype summary), paths and other objects as strings,
non-finite floats as the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``
so every line is strict JSON.

:func:`configure_logging` is idempotent: calling it again replaces the handlers
it installed before (and closes the old log file).  Worker processes started
with ``fork`` inherit the configuration; with ``spawn``/``forkserver`` call it
again in the worker (e.g. as the pool initializer) with the same log file: the
file is opened in append mode and each record is written with one ``write``
call, so lines of several processes do not interleave.

Log with ``structlog.get_logger(__name__)``; records of plain ``logging``
loggers (third-party libraries) go through the same renderers.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import time
from collections.abc import Mapping
from pathlib import PurePath
from typing import IO, Any

import numpy as np
import structlog

__all__ = ["configure_logging", "stage_timer", "StageTimer", "json_safe", "LEVELS"]

#: Accepted level names (the values of ``logging.console_level`` / ``logging.file_level`` in the config).
LEVELS: dict[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}

#: Loggers of libraries that are chatty at DEBUG and of no use in an inspection log.
DEFAULT_QUIET_LOGGERS: tuple[str, ...] = ("matplotlib", "PIL")

_HANDLER_MARK = "_dscope_handler"


def _level(name: str | int, what: str) -> int:
    if isinstance(name, int) and not isinstance(name, bool):
        return name
    try:
        return LEVELS[str(name).lower()]
    except KeyError:
        raise ValueError(f"{what}: unknown log level {name!r}; use one of {sorted(LEVELS)}") from None


def json_safe(obj: Any, *, max_array_items: int = 64) -> Any:
    """A copy of ``obj`` that :func:`json.dumps` writes as strict JSON.

    NumPy scalars become Python numbers, arrays up to ``max_array_items``
    elements become lists (larger ones a ``{"shape", "dtype"}`` summary),
    tuples/sets become lists, non-finite floats become ``"NaN"`` /
    ``"Infinity"`` / ``"-Infinity"`` and anything else unknown its ``str``.

    Examples
    --------
    >>> import numpy as np
    >>> json_safe({"t": np.float32(0.5), "n": np.int64(3), "a": np.arange(3), "bad": float("nan")})
    {'t': 0.5, 'n': 3, 'a': [0, 1, 2], 'bad': 'NaN'}
    """
    if isinstance(obj, np.generic):  # before the float check: np.float64 subclasses float
        return json_safe(obj.item(), max_array_items=max_array_items)
    if obj is None or isinstance(obj, (bool, str, int)):
        return obj
    if isinstance(obj, float):
        if math.isfinite(obj):
            return obj
        return "NaN" if math.isnan(obj) else ("Infinity" if obj > 0 else "-Infinity")
    if isinstance(obj, np.ndarray):
        if obj.size > max_array_items:
            return {"shape": list(obj.shape), "dtype": str(obj.dtype)}
        return json_safe(obj.tolist(), max_array_items=max_array_items)
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v, max_array_items=max_array_items) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [json_safe(v, max_array_items=max_array_items) for v in obj]
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, BaseException):
        return f"{type(obj).__name__}: {obj}"
    return str(obj)


def _plain_values(max_array_items: int):
    """Processor: numpy values to plain Python (keeps the console free of ``np.float64(...)``)."""

    def proc(_logger, _name, event_dict):
        for k, v in event_dict.items():
            if isinstance(v, (np.generic, np.ndarray)):
                event_dict[k] = json_safe(v, max_array_items=max_array_items)
        return event_dict

    return proc


def _strict_json(max_array_items: int):
    """Processor: every value JSON-safe (applied only on the JSON renderers' path)."""

    def proc(_logger, _name, event_dict):
        return {
            k: (v if k == "exc_info" else json_safe(v, max_array_items=max_array_items)) for k, v in event_dict.items()
        }

    return proc


def _add_pid(_logger, _name, event_dict):
    event_dict.setdefault("pid", os.getpid())
    return event_dict


_FIRST_KEYS = ("timestamp", "level", "event", "logger", "pid")


def _lead_keys(_logger, _name, event_dict):
    """Put timestamp, level, event, logger and pid first in each JSON line (easier to read with ``tail``)."""
    head = {k: event_dict[k] for k in _FIRST_KEYS if k in event_dict}
    return {**head, **{k: v for k, v in event_dict.items() if k not in head}}


class _LineFileHandler(logging.FileHandler):
    """Append-mode file handler that writes each record (one JSON line) with a single ``write``."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = self.format(record) + self.terminator
            if self.stream is None:
                self.stream = self._open()
            self.stream.write(msg)
            self.stream.flush()
        except Exception:  # pragma: no cover - mirrors logging.Handler.emit
            self.handleError(record)


#: Width the event text is padded to on the console (key-values line up after it).
CONSOLE_EVENT_WIDTH = 36


def _console_renderer(colors: bool):
    # structlog >= 25.5 renamed ``pad_event`` to ``pad_event_to``
    try:
        return structlog.dev.ConsoleRenderer(colors=colors, pad_event_to=CONSOLE_EVENT_WIDTH)
    except TypeError:  # pragma: no cover - older structlog
        return structlog.dev.ConsoleRenderer(colors=colors, pad_event=CONSOLE_EVENT_WIDTH)


def configure_logging(
    console_level: str = "info",
    log_file: str | os.PathLike | None = None,
    *,
    json_console: bool = False,
    file_level: str = "debug",
    console_stream: IO[str] | None = None,
    colors: bool | None = None,
    quiet_loggers: tuple[str, ...] = DEFAULT_QUIET_LOGGERS,
    max_array_items: int = 64,
) -> None:
    """Configure structlog + stdlib logging for the whole process (idempotent).

    Parameters
    ----------
    console_level : {"debug", "info", "warning", "error"}
        Threshold of the console handler (``logging.console_level`` in the config).
    log_file : path, optional
        JSON-lines log file (appended; parent folders are created).  None: no file.
    json_console : bool
        Render the console as JSON lines too (daemon / journald).
    file_level : {"debug", "info", "warning", "error"}
        Threshold of the file handler (``logging.file_level`` in the config).
    console_stream : text stream, optional
        Where console lines go; ``sys.stderr`` (looked up at call time) by default.
    colors : bool, optional
        ANSI colours on the console; default: only when the stream is a terminal.
    quiet_loggers : tuple of str
        Stdlib loggers raised to WARNING (chatty libraries).
    max_array_items : int
        Arrays with more elements are logged as a shape/dtype summary.

    Raises
    ------
    ValueError
        Unknown level name.
    OSError
        The log file cannot be opened.

    Examples
    --------
    >>> import io
    >>> buf = io.StringIO()
    >>> configure_logging("info", console_stream=buf, colors=False)
    >>> structlog.get_logger("demo").info("zone detection complete", elapsed_s=0.12)
    >>> "zone detection complete" in buf.getvalue()
    True
    """
    c_level = _level(console_level, "console_level")
    f_level = _level(file_level, "file_level")
    stream = console_stream if console_stream is not None else sys.stderr

    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.stdlib.PositionalArgumentsFormatter(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        _plain_values(max_array_items),
    ]
    json_processors = [
        structlog.stdlib.ProcessorFormatter.remove_processors_meta,
        _add_pid,
        structlog.processors.format_exc_info,
        _strict_json(max_array_items),
        _lead_keys,
        structlog.processors.JSONRenderer(sort_keys=False),
    ]
    if colors is None:
        colors = bool(getattr(stream, "isatty", lambda: False)())
    console_formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=json_processors
        if json_console
        else [
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _console_renderer(colors),
        ],
    )

    root = logging.getLogger()
    # idempotent: drop (and close) only the handlers this function installed before
    for h in list(root.handlers):
        if getattr(h, _HANDLER_MARK, False):
            root.removeHandler(h)
            with contextlib.suppress(Exception):
                h.close()

    console = logging.StreamHandler(stream)
    console.setLevel(c_level)
    console.setFormatter(console_formatter)
    setattr(console, _HANDLER_MARK, True)
    root.addHandler(console)
    levels = [c_level]

    if log_file is not None:
        path = os.fspath(log_file)
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        fh = _LineFileHandler(path, mode="a", encoding="utf-8", delay=False)
        fh.setLevel(f_level)
        fh.setFormatter(structlog.stdlib.ProcessorFormatter(foreign_pre_chain=shared, processors=json_processors))
        setattr(fh, _HANDLER_MARK, True)
        root.addHandler(fh)
        levels.append(f_level)

    root.setLevel(min(levels))
    for name in quiet_loggers:
        logging.getLogger(name).setLevel(logging.WARNING)

    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # not cached: loggers created before a re-configuration pick up the new one
        cache_logger_on_first_use=False,
    )


class StageTimer:
    """Result of :func:`stage_timer`: ``elapsed_s`` after the block, ``fields`` to add key-values inside it."""

    def __init__(self, stage: str):
        self.stage = stage
        self.elapsed_s: float | None = None
        self.fields: dict[str, Any] = {}

    def add(self, **kv) -> None:
        """Add key-values to the completion line."""
        self.fields.update(kv)


@contextlib.contextmanager
def stage_timer(log, stage: str, **kv):
    """Time a block and log ``"<stage> complete"`` with ``elapsed_s`` (or ``"<stage> failed"`` and re-raise).

    Parameters
    ----------
    log : structlog logger or None
        Logger to write to (``structlog.get_logger()`` when None).
    stage : str
        Human stage name, e.g. ``"zone detection"``.
    **kv
        Extra key-values for the log line (e.g. ``image="a.png"``).

    Yields
    ------
    StageTimer
        Call ``.add(n_defects=3)`` inside the block to log results; read
        ``.elapsed_s`` after it.

    Examples
    --------
    >>> import io
    >>> buf = io.StringIO()
    >>> configure_logging("info", console_stream=buf, colors=False)
    >>> with stage_timer(structlog.get_logger(), "zone detection", image="a.png") as t:
    ...     t.add(zones=4)
    >>> "zone detection complete" in buf.getvalue() and t.elapsed_s >= 0
    True
    """
    log = log if log is not None else structlog.get_logger()
    timer = StageTimer(stage)
    t0 = time.perf_counter()
    try:
        yield timer
    except BaseException as exc:
        timer.elapsed_s = time.perf_counter() - t0
        fields = {**kv, **timer.fields, "stage": stage, "elapsed_s": round(timer.elapsed_s, 6)}
        code = getattr(exc, "code", None)
        if isinstance(code, str):
            fields["error_code"] = code
        fields["error"] = f"{type(exc).__name__}: {exc}"
        log.warning(f"{stage} failed", **fields)
        raise
    timer.elapsed_s = time.perf_counter() - t0
    log.info(f"{stage} complete", **{**kv, **timer.fields, "stage": stage, "elapsed_s": round(timer.elapsed_s, 6)})
