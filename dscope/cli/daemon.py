"""``dscope daemon | subscribe | ctl | history``: the bench service and its clients.

``dscope daemon`` runs in the foreground and never forks (systemd ``Type=notify``).
``dscope subscribe`` prints one JSON object per line (``{"topic": ..., **body}``).
``dscope ctl COMMAND [ARGS]`` sends one control request; ARGS are ``key=value``
(values parsed as JSON when they are valid JSON, else strings) or, for
``inspect``/``set_profile``/``set_fiber``, the main argument alone
(``dscope ctl inspect /data/img.png``); ``calibrate`` also takes ``--dot-spacing-um UM`` or
``--cladding-um UM`` and ``--no-apply``.  Exit 0 when the reply is ``ok``, 1 otherwise.
``dscope history`` queries the SQLite results (pandas) and exports CSV.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from dscope.errors import DScopeError

#: the argument a lone positional value of ``dscope ctl`` fills
PRIMARY_ARG = {"inspect": "path", "set_profile": "profile", "set_fiber": "type"}
#: reply timeout of ``dscope ctl`` when --timeout is not given (calibrate: capture + measurement)
CTL_TIMEOUT_S = 10.0
CTL_CALIBRATE_TIMEOUT_S = 60.0


def register(sub) -> None:
    d = sub.add_parser("daemon", help="run the bench daemon in the foreground (hot folder, camera, ZeroMQ, SQLite)")
    d.add_argument("--config", metavar="FILE", help="configuration file (default: the shipped config/config.json)")
    d.add_argument("--hot-folder", metavar="DIR", help="watch DIR for images (overrides daemon.hot_folder)")
    d.add_argument("--pub", metavar="ENDPOINT", help="PUB endpoint (default daemon.pub_endpoint, tcp://127.0.0.1:5555)")
    d.add_argument("--control", metavar="ENDPOINT", help="control endpoint (default tcp://127.0.0.1:5556)")
    d.add_argument("--state-dir", metavar="DIR", help="database and frames (default $STATE_DIRECTORY or ~/.local/state/dscope)")
    d.add_argument("--camera", metavar="SPEC", help="none | emulated[:FOLDER] | basler[:SERIAL] (default daemon.camera)")
    d.set_defaults(func=cmd_daemon)

    s = sub.add_parser("subscribe", help="print the daemon's messages, one JSON object per line")
    s.add_argument("--config", metavar="FILE", help="configuration file (for the default endpoint)")
    s.add_argument("--pub", metavar="ENDPOINT", help="the daemon's PUB endpoint")
    s.add_argument("--topic", action="append", metavar="T", help="verdict, state, heartbeat, focus or calibration (repeatable; default all)")
    s.add_argument("--count", type=int, metavar="N", help="exit after N messages")
    s.add_argument("--timeout", type=float, metavar="S", help="exit 1 when nothing arrives for S seconds")
    s.set_defaults(func=cmd_subscribe)

    c = sub.add_parser("ctl", help="send one control command to the daemon and print the JSON reply")
    c.add_argument("--config", metavar="FILE", help="configuration file (for the default endpoint)")
    c.add_argument("--control", metavar="ENDPOINT", help="the daemon's control endpoint")
    c.add_argument("--timeout", type=float, default=None, metavar="S",
                   help=f"reply timeout (default {CTL_TIMEOUT_S:g} s, calibrate {CTL_CALIBRATE_TIMEOUT_S:g} s)")
    c.add_argument("--dot-spacing-um", type=float, metavar="UM", help="calibrate: pitch of the stage-micrometer dot grid")
    c.add_argument("--cladding-um", type=float, metavar="UM", help="calibrate: cladding diameter of a reference fiber")
    c.add_argument("--apply", action=argparse.BooleanOptionalAction, default=None,
                   help="calibrate: use the new scale for following images (default: yes)")
    c.add_argument("command", metavar="COMMAND", help="status, inspect, trigger, calibrate, focus_start, focus_stop, "
                   "set_profile, set_fiber, reset, shutdown")
    c.add_argument("args", nargs="*", metavar="ARG", help="key=value arguments (or the main argument alone)")
    c.set_defaults(func=cmd_ctl)

    h = sub.add_parser("history", help="query stored verdicts (SQLite) and export CSV")
    h.add_argument("--config", metavar="FILE", help="configuration file (state dir, database name)")
    h.add_argument("--state-dir", metavar="DIR", help="the daemon's state dir")
    h.add_argument("--since", metavar="WHEN", help="ISO date/time (UTC unless it has an offset) or age like 30m, 12h, 7d")
    h.add_argument("--status", choices=["PASS", "FAIL", "ERROR", "UNGRADED"], help="only this status")
    h.add_argument("--limit", type=int, metavar="N", help="only the newest N rows")
    h.add_argument("--csv", metavar="FILE", help="write the rows to FILE (CSV) instead of printing a table")
    h.add_argument("--json", action="store_true", help="print one JSON object per row (full result documents)")
    h.set_defaults(func=cmd_history)


def _config(path):
    from dscope.config import load_config

    return load_config(path)


# ----------------------------------------------------------------------------- daemon
def cmd_daemon(args) -> int:
    from dscope.daemon.service import Daemon

    cfg = _config(args.config)
    daemon = Daemon(
        cfg,
        config_path=args.config,
        hot_folder=args.hot_folder,
        pub_endpoint=args.pub,
        control_endpoint=args.control,
        state_dir=args.state_dir,
        camera=args.camera,
    )
    return daemon.run()


# ----------------------------------------------------------------------------- subscribe
def cmd_subscribe(args) -> int:
    from dscope.ipc.client import Subscriber
    from dscope.ipc.envelope import dumps

    endpoint = args.pub or _config(args.config).daemon.pub_endpoint
    n = 0
    with Subscriber(endpoint, args.topic) as sub:
        while args.count is None or n < args.count:
            msg = sub.recv(args.timeout)
            if msg is None:
                print(f"dscope: no message within {args.timeout} s", file=sys.stderr)
                return 1
            topic, body = msg
            try:
                print(dumps(body), flush=True)
            except BrokenPipeError:  # e.g. `dscope subscribe | head`: the reader is gone, stop quietly
                _silence_stdout()
                return 0
            n += 1
    return 0


def _silence_stdout() -> None:
    import os

    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


# ----------------------------------------------------------------------------- ctl
def parse_ctl_args(command: str, items: list[str]) -> dict:
    """``["path=/x.png"]`` or ``["/x.png"]`` -> request dict; raise ``DScopeError('bad_argument')``.

    Examples
    --------
    >>> parse_ctl_args("set_fiber", ["mm", "core_um=50"])
    {'cmd': 'set_fiber', 'type': 'mm', 'core_um': 50}
    """
    req: dict = {"cmd": command}
    for i, item in enumerate(items):
        key, sep, value = item.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            primary = PRIMARY_ARG.get(command)
            if i == 0 and primary:
                if primary == "path":
                    item = str(Path(item).absolute())
                req[primary] = item
                continue
            raise DScopeError("bad_argument", f"argument {item!r} must be key=value")
        try:
            req[key] = json.loads(value)
        except json.JSONDecodeError:
            req[key] = value
    return req


def cmd_ctl(args) -> int:
    from dscope.ipc.client import ControlClient

    endpoint = args.control or _config(args.config).daemon.control_endpoint
    req = parse_ctl_args(args.command, args.args)
    options = {"dot_spacing_um": args.dot_spacing_um, "cladding_um": args.cladding_um, "apply": args.apply}
    given = {k: v for k, v in options.items() if v is not None}
    if given and args.command != "calibrate":
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise DScopeError("bad_argument", f"{flags}: only for 'dscope ctl calibrate'")
    req.update(given)  # the daemon validates (exactly one target, positive)
    timeout_s = args.timeout
    if timeout_s is None:
        timeout_s = CTL_CALIBRATE_TIMEOUT_S if args.command == "calibrate" else CTL_TIMEOUT_S
    with ControlClient(endpoint, timeout_s=timeout_s) as client:
        reply = client.request(req)
    try:
        print(json.dumps(reply, indent=2), flush=True)
    except BrokenPipeError:
        _silence_stdout()
    return 0 if reply.get("ok") else 1


# ----------------------------------------------------------------------------- history
def parse_since(text: str, now: float | None = None) -> float:
    """``"30m"``, ``"12h"``, ``"7d"``, ``"90s"`` (ago) or an ISO date/time -> epoch seconds.

    Examples
    --------
    >>> parse_since("2h", now=10000.0)
    2800.0
    >>> parse_since("1970-01-01T01:00:00")
    3600.0
    """
    now = time.time() if now is None else now
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text)
    if m:
        return now - float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    try:
        dt = datetime.fromisoformat(text.strip())
    except ValueError:
        raise DScopeError("bad_argument", f"--since {text!r}: use an ISO date/time or an age like 30m, 12h, 7d") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def cmd_history(args) -> int:
    from dscope.daemon.service import default_state_dir
    from dscope.daemon.store import read_history

    cfg = _config(args.config)
    dcfg = cfg.daemon
    state_dir = Path(args.state_dir or dcfg.state_dir or default_state_dir())
    since = parse_since(args.since) if args.since else None
    df = read_history(
        state_dir / dcfg.database_file, since=since, status=args.status, limit=args.limit, with_result=args.json
    )
    if args.csv:
        out = df.drop(columns=[c for c in ("result_json", "source_json") if c in df.columns])
        out.to_csv(args.csv, index=False)
        print(f"{len(out)} row(s) written to {args.csv}", file=sys.stderr)
    elif args.json:
        for row in df.to_dict(orient="records"):
            rec = {k: v for k, v in row.items() if k not in ("result_json", "source_json", "time_iso")}
            rec["source"] = json.loads(row["source_json"])
            rec["result"] = json.loads(row["result_json"])
            print(json.dumps(rec, default=str))
    else:
        cols = ["id", "time_iso", "status", "defect_count", "fiber_type", "rule_set", "source_kind", "image_path", "error_code"]
        if df.empty:
            print("no verdicts")
        else:
            print(df[cols].to_string(index=False))
    return 0
