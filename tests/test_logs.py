"""Tests of dscope.reporting.logs: structlog console + JSON-lines file, stage timings, worker processes."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import multiprocessing as mp
import os
import time

import numpy as np
import pytest
import structlog

from dscope.errors import LocalizationError
from dscope.reporting.logs import configure_logging, json_safe, stage_timer


@pytest.fixture(autouse=True)
def _restore_logging():
    """Leave the process's logging as it was (other test modules share it)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
            h.close()
    root.setLevel(level)
    structlog.reset_defaults()


def read_json_lines(path):
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    return [json.loads(ln) for ln in lines]  # every line must be strict JSON


def test_file_gets_json_lines_with_numpy_values_as_numbers(tmp_path):
    log_file = tmp_path / "logs" / "batch_20261124T010000Z.log"  # parent folder is created
    configure_logging("info", log_file, console_stream=io.StringIO())
    log = structlog.get_logger("dscope.test")
    log.info(
        "defects measured",
        width_um=np.float64(4.25),
        count=np.int64(3),
        ratio=np.float32(0.5),
        center_px=np.array([10.5, 20.0]),
        ok=np.bool_(True),
        nan_value=float("nan"),
        image=np.zeros((64, 64), np.uint8),
    )
    (rec,) = read_json_lines(log_file)
    assert rec["event"] == "defects measured"
    assert rec["level"] == "info" and rec["logger"] == "dscope.test" and rec["pid"] == os.getpid()
    assert rec["width_um"] == 4.25 and isinstance(rec["width_um"], float)
    assert rec["count"] == 3 and isinstance(rec["count"], int)
    assert rec["ratio"] == 0.5
    assert rec["center_px"] == [10.5, 20.0]
    assert rec["ok"] is True
    assert rec["nan_value"] == "NaN"
    assert rec["image"] == {"shape": [64, 64], "dtype": "uint8"}  # big arrays are summarised
    ts = dt.datetime.fromisoformat(rec["timestamp"].replace("Z", "+00:00"))
    assert ts.tzinfo is not None and abs((dt.datetime.now(dt.timezone.utc) - ts).total_seconds()) < 60


def test_console_is_human_text_and_levels_are_separate(tmp_path):
    buf = io.StringIO()
    log_file = tmp_path / "run.log"
    configure_logging("info", log_file, console_stream=buf, colors=False, file_level="debug")
    log = structlog.get_logger("dscope.test")
    log.debug("only in the file", k=1)
    log.info("zone detection complete", elapsed_s=np.float64(0.12), image="a.png")
    text = buf.getvalue()
    assert "zone detection complete" in text and "elapsed_s=0.12" in text and "image=a.png" in text
    assert "only in the file" not in text
    assert "\x1b[" not in text  # no colour codes when asked for none
    with pytest.raises(json.JSONDecodeError):
        json.loads(text.splitlines()[0])
    events = [r["event"] for r in read_json_lines(log_file)]
    assert events == ["only in the file", "zone detection complete"]


def test_json_console(tmp_path):
    buf = io.StringIO()
    configure_logging("info", None, console_stream=buf, json_console=True)
    structlog.get_logger().info("frame grabbed", exposure_us=np.int32(5000))
    (rec,) = [json.loads(ln) for ln in buf.getvalue().splitlines()]
    assert rec["event"] == "frame grabbed" and rec["exposure_us"] == 5000


def test_stdlib_loggers_go_through_the_same_renderers(tmp_path):
    log_file = tmp_path / "run.log"
    configure_logging("warning", log_file, console_stream=io.StringIO())
    logging.getLogger("some.library").warning("disk %s is %d%% full", "/data", 93)
    (rec,) = read_json_lines(log_file)
    assert rec["event"] == "disk /data is 93% full" and rec["level"] == "warning" and rec["logger"] == "some.library"


def test_configure_twice_replaces_handlers(tmp_path):
    first, second = tmp_path / "first.log", tmp_path / "second.log"
    buf1, buf2 = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    before = len(root.handlers)
    configure_logging("info", first, console_stream=buf1)
    configure_logging("info", second, console_stream=buf2)
    assert len(root.handlers) == before + 2  # one console + one file, not four
    structlog.get_logger().info("after reconfigure")
    assert first.read_text() == ""
    assert [r["event"] for r in read_json_lines(second)] == ["after reconfigure"]
    assert "after reconfigure" in buf2.getvalue() and buf1.getvalue() == ""


def test_logger_created_before_reconfigure_follows_it(tmp_path):
    log = structlog.get_logger("early")
    configure_logging("info", tmp_path / "a.log", console_stream=io.StringIO())
    log.info("one")
    configure_logging("info", tmp_path / "b.log", console_stream=io.StringIO())
    log.info("two")
    assert [r["event"] for r in read_json_lines(tmp_path / "b.log")] == ["two"]


def test_exceptions_are_written_as_text(tmp_path):
    log_file = tmp_path / "run.log"
    configure_logging("info", log_file, console_stream=io.StringIO())
    try:
        raise ZeroDivisionError("division by zero")
    except ZeroDivisionError:
        structlog.get_logger().exception("image failed", image="x.png")
    (rec,) = read_json_lines(log_file)
    assert rec["level"] == "error" and "ZeroDivisionError" in rec["exception"]


def test_stage_timer_logs_completion_with_elapsed(tmp_path):
    log_file = tmp_path / "run.log"
    configure_logging("info", log_file, console_stream=io.StringIO())
    log = structlog.get_logger("dscope.pipeline")
    with stage_timer(log, "zone detection", image="a.png") as t:
        time.sleep(0.01)
        t.add(zones=np.int64(4))
    (rec,) = read_json_lines(log_file)
    assert rec["event"] == "zone detection complete"
    assert rec["image"] == "a.png" and rec["zones"] == 4 and rec["stage"] == "zone detection"
    assert isinstance(rec["elapsed_s"], float) and rec["elapsed_s"] >= 0.01
    assert t.elapsed_s == pytest.approx(rec["elapsed_s"], abs=1e-5)


def test_stage_timer_logs_failure_with_code_and_reraises(tmp_path):
    log_file = tmp_path / "run.log"
    configure_logging("info", log_file, console_stream=io.StringIO())
    with pytest.raises(LocalizationError):
        with stage_timer(None, "localization", image="b.png"):
            raise LocalizationError("no circle found")
    (rec,) = read_json_lines(log_file)
    assert rec["event"] == "localization failed" and rec["level"] == "warning"
    assert rec["error_code"] == "localization_failed" and "no circle found" in rec["error"]
    assert rec["elapsed_s"] >= 0


def test_bad_level_is_rejected():
    with pytest.raises(ValueError, match="unknown log level"):
        configure_logging("verbose", None, console_stream=io.StringIO())


def test_json_safe_handles_nested_numpy():
    out = json_safe({"a": (np.float32(1.5), [np.int8(2)]), "b": {np.str_("k"): np.array([[1, 2]])}, "c": float("-inf")})
    assert out == {"a": [1.5, [2]], "b": {"k": [[1, 2]]}, "c": "-Infinity"}
    json.dumps(out, allow_nan=False)


def _worker_configures(log_file: str, n: int) -> None:
    configure_logging("warning", log_file, console_stream=io.StringIO())
    log = structlog.get_logger("worker")
    for i in range(n):
        log.info("image done", i=np.int64(i))


def _worker_inherits(n: int) -> None:
    log = structlog.get_logger("forked")
    for i in range(n):
        log.info("image done", i=i)


@pytest.mark.system
def test_worker_processes_append_to_the_same_file(tmp_path):
    """A spawned worker configures itself; a forked one inherits the parent's setup. Lines never interleave."""
    log_file = tmp_path / "batch.log"
    configure_logging("warning", log_file, console_stream=io.StringIO())
    n = 200
    spawned = mp.get_context("spawn").Process(target=_worker_configures, args=(str(log_file), n))
    spawned.start()
    forked = mp.get_context("fork").Process(target=_worker_inherits, args=(n,))
    forked.start()
    log = structlog.get_logger("parent")
    for i in range(n):
        log.info("image done", i=i)
    spawned.join(60)
    forked.join(60)
    assert spawned.exitcode == 0 and forked.exitcode == 0
    recs = read_json_lines(log_file)  # fails on any interleaved/partial line
    by_logger = {}
    for r in recs:
        by_logger.setdefault(r["logger"], []).append(r)
    assert {k: len(v) for k, v in by_logger.items()} == {"parent": n, "worker": n, "forked": n}
    assert len({r["pid"] for r in recs}) == 3
    assert [r["i"] for r in by_logger["worker"]] == list(range(n))
