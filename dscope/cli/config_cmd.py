"""``dscope config check FILE`` and ``dscope config show``."""

from __future__ import annotations

import json
import sys

from dscope.errors import ConfigError


def register(sub) -> None:
    p = sub.add_parser("config", help="validate or print configuration")
    csub = p.add_subparsers(dest="config_command", metavar="ACTION")
    c = csub.add_parser("check", help="validate a configuration file")
    c.add_argument("file", metavar="FILE")
    c.set_defaults(func=check)
    s = csub.add_parser("show", help="print the effective configuration as JSON")
    s.add_argument("--config", metavar="FILE", help="configuration file (default: the shipped one)")
    s.add_argument("--profile", metavar="NAME", help="print only this processing profile")
    s.set_defaults(func=show)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def check(args) -> int:
    from dscope.config import load_config

    try:
        cfg = load_config(args.file)
    except ConfigError as exc:
        print(f"INVALID {exc.message}", file=sys.stderr)
        return 1
    print(f"OK {args.file}: profiles {', '.join(sorted(cfg.profiles))}; fiber types {', '.join(sorted(cfg.fiber_types))}")
    return 0


def show(args) -> int:
    from dscope.config import load_config

    cfg = load_config(args.config)
    data = cfg.model_dump(mode="json")
    if args.profile:
        data = {args.profile: cfg.profile(args.profile).model_dump(mode="json")}
    else:
        data = {"source": cfg.source_path, **data}
    print(json.dumps(data, indent=2))
    return 0
