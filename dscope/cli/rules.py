"""``dscope rules list|show NAME|check FILE|schema``: inspect and validate grading rule sets.

Exit codes (see :mod:`dscope.cli`): ``list``/``show`` 0; ``show`` of an
unknown or invalid rule set 2 (via the ``rule_set_*`` error codes);
``check`` 0 when every file is valid, 1 when one is invalid or missing;
``schema --check`` 1 when the shipped schema is stale.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from dscope.errors import ConfigError


def register(sub) -> None:
    p = sub.add_parser("rules", help="list, show and validate grading rule sets (config/rules/*.json)")
    rsub = p.add_subparsers(dest="rules_command", metavar="ACTION")

    lst = rsub.add_parser("list", help="list the selectable rule sets")
    lst.add_argument("--all", action="store_true", help="also list placeholder templates (e.g. IEC Ed.3)")
    lst.add_argument("--dir", metavar="DIR", help="rules folder (default: config/rules)")
    lst.set_defaults(func=cmd_list)

    show = rsub.add_parser("show", help="print a rule set's zones and limits")
    show.add_argument("name", metavar="NAME", help="rule-set name or path to a .json file")
    show.add_argument("--json", action="store_true", help="print the validated rule set as JSON")
    show.add_argument("--dir", metavar="DIR", help="rules folder (default: config/rules)")
    show.set_defaults(func=cmd_show)

    chk = rsub.add_parser("check", help="validate rule-set files")
    chk.add_argument("files", metavar="FILE", nargs="+")
    chk.set_defaults(func=cmd_check)

    sch = rsub.add_parser("schema", help="print (or --write / --check) the rule-set JSON Schema")
    g = sch.add_mutually_exclusive_group()
    g.add_argument("--write", action="store_true", help="write dscope/schemas/rule_set.schema.json")
    g.add_argument("--check", action="store_true", help="exit 1 if the shipped schema is out of date")
    sch.set_defaults(func=cmd_schema)

    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def cmd_list(args) -> int:
    from dscope.inspection.rules import PLACEHOLDER_STATUS, scan_rule_sets

    entries = scan_rule_sets(Path(args.dir) if args.dir else None)
    shown = [e for e in entries if args.all or e.status != PLACEHOLDER_STATUS]
    if not shown:
        print("no rule sets found")
        return 0
    width = max(len(e.name) for e in shown)
    for e in shown:
        tag = "" if e.status == "active" else f"  [{e.status}]"
        print(f"{e.name:<{width}}  {e.title}{tag}")
    hidden = len(entries) - len(shown)
    if hidden:
        print(f"({hidden} placeholder template(s) hidden; use --all)")
    return 0


def _bins_text(rs, zone: str, cls: str) -> str:
    if getattr(rs.limits[zone], cls) is None:
        return "none allowed (not listed: default)"
    parts = []
    for b in rs.bins(zone, cls):
        n = "no limit" if b.max_count is None else ("none" if b.max_count == 0 else f"max {b.max_count}")
        parts.append(f"{b.label()} {n}")
    return ", ".join(parts)


def cmd_show(args) -> int:
    from dscope.inspection.rules import RULE_CLASSES, load_rule_set

    rs = load_rule_set(args.name, Path(args.dir) if args.dir else None, allow_placeholder=True)
    if args.json:
        print(json.dumps(rs.model_dump(mode="json"), indent=2))
        return 0
    u = rs.units
    print(f"{rs.name}: {rs.title}")
    print(f"  standard {rs.standard}, edition {rs.edition}, fiber {rs.fiber_mode}, status {rs.status}")
    print(f"  units {u}; zone assignment {rs.zone_assignment}; sizes rounded to {rs.size_decimals} decimals"
          + ("; bin gaps allowed" if rs.allow_bin_gaps else ""))
    if rs.status != "active":
        print("  WARNING: placeholder template, not selectable for grading")
    for zd in rs.zone_defs():
        print(f"  {zd.name} {zd.inner_um:g}-{zd.outer_um:g} {u}")
        for cls in RULE_CLASSES:
            print(f"    {cls:<8} {_bins_text(rs, zd.name, cls)}")
    return 0


def cmd_check(args) -> int:
    from dscope.inspection.rules import read_rule_set_file

    failed = 0
    for f in args.files:
        try:
            rs = read_rule_set_file(f)
        except ConfigError as exc:
            print(f"INVALID {exc.code}: {exc.message}", file=sys.stderr)
            failed += 1
            continue
        note = "" if rs.status == "active" else f" (status {rs.status}: not selectable for grading)"
        print(f"OK {f}: {rs.name}, {len(rs.zones)} zones, units {rs.units}{note}")
    return 1 if failed else 0


def cmd_schema(args) -> int:
    from dscope.inspection.rules import schema_path, schema_text

    text = schema_text()
    path = schema_path()
    if args.write:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
        return 0
    if args.check:
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        if current != text:
            print(f"STALE {path}: regenerate with `dscope rules schema --write`", file=sys.stderr)
            return 1
        print(f"OK {path} is current")
        return 0
    sys.stdout.write(text)
    return 0
