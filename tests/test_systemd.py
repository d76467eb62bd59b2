"""systemd: the unit file verifies cleanly; the notify protocol over a real AF_UNIX datagram socket.

The daemon's own READY / WATCHDOG / STOPPING sequence is tested end-to-end in
``test_daemon_e2e.py::test_systemd_notify_sequence``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from dscope.daemon.sdnotify import Notifier, watchdog_interval_s

REPO = Path(__file__).resolve().parent.parent
UNIT = REPO / "systemd" / "dscope.service"


def _unit_keys(text: str) -> dict[str, list[str]]:
    keys: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            k, v = line.split("=", 1)
            keys.setdefault(k.strip(), []).append(v.strip())
    return keys


def test_unit_has_the_required_settings():
    keys = _unit_keys(UNIT.read_text())
    assert keys["Type"] == ["notify"]
    assert keys["Restart"] == ["on-failure"]
    assert keys["ProtectSystem"] == ["strict"]
    assert float(keys["WatchdogSec"][0].rstrip("s")) > 0
    assert keys["User"][0] not in ("", "root") and keys["StateDirectory"] == ["dscope"]
    assert "-HUP" in keys["ExecReload"][0]
    exec_start = keys["ExecStart"][0].split()
    assert exec_start[0].startswith("/") and exec_start[1] == "daemon"
    for hardening in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "ProtectKernelTunables", "RestrictSUIDSGID"):
        assert keys[hardening] == ["yes"], hardening


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_is_silent(tmp_path):
    """CI rule: any output (even a warning) is a failure.

    The shipped unit runs /usr/local/bin/dscope; verify needs an existing executable,
    so the copy under test runs this interpreter with ``-m dscope`` instead.
    """
    text = UNIT.read_text()
    keys = _unit_keys(text)
    shipped = keys["ExecStart"][0].split()[0]
    here = f"{sys.executable} -m dscope"
    unit = tmp_path / "dscope.service"
    unit.write_text(text.replace(f"ExecStart={shipped}", f"ExecStart={here}"))
    assert f"ExecStart={here} daemon" in unit.read_text()
    proc = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60,
        env={**os.environ, "SYSTEMD_LOG_COLOR": "0"},
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    # and verify does catch a mistake (so a silent pass means something)
    bad = tmp_path / "bad.service"
    bad.write_text(unit.read_text().replace("Type=notify", "Type=notify\nWatchdogSecs=5"))
    proc = subprocess.run(["systemd-analyze", "verify", str(bad)], capture_output=True, text=True, timeout=60)
    assert proc.stdout + proc.stderr != ""


def _dgram_server(address):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(address)
    s.settimeout(5)
    return s


def test_notifier_path_socket(tmp_path):
    path = str(tmp_path / "notify.sock")
    server = _dgram_server(path)
    try:
        n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "4000000"})
        assert n.enabled and n.watchdog_interval_s == 2.0
        assert n.ready("serving 0 images")
        assert server.recv(4096).decode().split("\n") == ["READY=1", "STATUS=serving 0 images"]
        assert n.watchdog()
        assert server.recv(4096) == b"WATCHDOG=1"
        assert n.reloading()
        fields = server.recv(4096).decode().split("\n")
        assert fields[0] == "RELOADING=1" and fields[1].startswith("MONOTONIC_USEC=") and int(fields[1][15:]) > 0
        assert n.status("busy")
        assert server.recv(4096) == b"STATUS=busy"
        assert n.stopping()
        assert server.recv(4096) == b"STOPPING=1"
        n.close()
    finally:
        server.close()


def test_notifier_abstract_socket():
    name = f"dscope-test-{uuid.uuid4().hex}"
    server = _dgram_server(b"\0" + name.encode())
    try:
        n = Notifier({"NOTIFY_SOCKET": "@" + name})
        assert n.ready()
        assert server.recv(4096) == b"READY=1"
        n.close()
    finally:
        server.close()


def test_notifier_never_blocks_on_a_full_socket(tmp_path):
    path = str(tmp_path / "full.sock")
    server = _dgram_server(path)  # never read
    try:
        n = Notifier({"NOTIFY_SOCKET": path})
        results = [n.watchdog() for _ in range(5000)]
        assert results[0] is True and results[-1] is False  # the queue filled up; no call blocked
        n.close()
    finally:
        server.close()


def test_notifier_without_systemd_and_broken_socket(tmp_path):
    n = Notifier({})
    assert not n.enabled and n.ready() is False and n.watchdog() is False and n.watchdog_interval_s is None
    gone = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens.sock")})
    assert gone.enabled and gone.ready() is False  # a send error is reported, never raised


def test_watchdog_interval_honours_pid():
    assert watchdog_interval_s({"WATCHDOG_USEC": "1000000"}) == 0.5
    assert watchdog_interval_s({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid())}) == 0.5
    assert watchdog_interval_s({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid() + 1)}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "junk"}) is None
    assert watchdog_interval_s({}) is None
