"""``dscope inspect``: batch inspection of image files and folders."""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
from pathlib import Path

from dscope.errors import DScopeError

EXIT_OK, EXIT_USAGE = 0, 2


def register(sub) -> None:
    p = sub.add_parser(
        "inspect",
        help="inspect end-face images and write results and reports",
        description="Inspect end-face images (files and/or folders) and write per-image JSON results, annotated "
        "images, defect CSVs, a batch summary CSV, plots and a log into --out. Exit 0 when the batch ran "
        "(whatever the verdicts), 2 on usage errors.",
    )
    p.add_argument("paths", nargs="*", metavar="PATH", help="image files and/or folders (png, jpg, tif, bmp)")
    p.add_argument("--out", "-o", metavar="DIR", help="output folder (created if missing)")
    p.add_argument("--fiber-type", metavar="TYPE", help="sm-pc, sm-apc, mm, mm-62.5, lc-200, lc-1000 or a rule set name")
    p.add_argument("--core-um", type=float, metavar="X", help="known core diameter in micrometres")
    p.add_argument("--cladding-um", type=float, metavar="Y", help="known cladding diameter in micrometres (sets the scale)")
    p.add_argument("--um-per-px", type=float, metavar="S", help="scale in micrometres per pixel (overrides everything)")
    p.add_argument("--calibration", metavar="FILE", help="calibration.json written by `dscope calibrate`")
    p.add_argument("--profile", metavar="NAME", help="processing profile (fast_scan, deep_inspection, ...)")
    p.add_argument("--zones", metavar="LIST", help="comma-separated zones to analyse, e.g. core,cladding")
    p.add_argument("--save-zones", action="store_true", help="also write each zone's masked crop as an image")
    p.add_argument("--config", metavar="FILE", help="configuration file (default: the shipped config/config.json)")
    p.add_argument("--workers", type=int, metavar="N", help="worker processes (default: one per CPU core)")
    p.add_argument("--recursive", "-r", action="store_true", help="descend into sub-folders")
    p.add_argument("--no-prompt", action="store_true", help="never ask questions (also implied without a terminal)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


# -- interactive questions ----------------------------------------------------------------
def _ask(prompt: str, validate, default=None, *, inp=input, out=sys.stdout):
    suffix = f" [{default}]" if default is not None else ""
    while True:
        try:
            raw = inp(f"{prompt}{suffix}: ").strip()
        except EOFError:
            raise DScopeError("bad_argument", f"no answer to {prompt!r}") from None
        if not raw and default is not None:
            raw = str(default)
        try:
            return validate(raw)
        except ValueError as exc:
            print(f"  {exc}", file=out)


def _positive(raw: str) -> float:
    try:
        v = float(raw)
    except ValueError:
        raise ValueError(f"{raw!r} is not a number") from None
    if not v > 0 or v != v or v == float("inf"):
        raise ValueError("enter a positive number of micrometres")
    return v


def _yes_no(raw: str) -> bool:
    r = raw.lower()
    if r in ("y", "yes"):
        return True
    if r in ("n", "no"):
        return False
    raise ValueError("answer y or n")


def _existing_folder(raw: str) -> str:
    p = Path(raw).expanduser()
    if not raw or not p.is_dir():
        raise ValueError(f"{raw!r} is not an existing folder")
    return str(p)


def _nonempty(raw: str) -> str:
    if not raw:
        raise ValueError("enter a folder name")
    return raw


def prompt_missing(args, config, *, inp=input, out=sys.stdout) -> None:
    """Ask for what a terminal user left out: input and output folders, fiber dimensions, fiber type."""
    if not args.paths:
        args.paths = [_ask("Input folder with end-face images", _existing_folder, inp=inp, out=out)]
    if not args.out:
        args.out = _ask("Output folder", _nonempty, default="dscope_results", inp=inp, out=out)
    if args.cladding_um is None and args.um_per_px is None and args.calibration is None:
        if _ask("Provide known fiber dimensions in microns? (y/n)", _yes_no, inp=inp, out=out):
            args.core_um = _ask("Core diameter (um)", _positive, inp=inp, out=out)
            while True:
                args.cladding_um = _ask("Cladding diameter (um)", _positive, inp=inp, out=out)
                if args.cladding_um > args.core_um:
                    break
                print("  the cladding must be larger than the core", file=out)
    if args.fiber_type is None:
        names = sorted(config.fiber_types)

        def _type(raw: str) -> str:
            if raw not in names:
                raise ValueError(f"choose one of: {', '.join(names)}")
            return raw

        args.fiber_type = _ask(f"Fiber type ({', '.join(names)})", _type, default=config.default_fiber_type, inp=inp, out=out)


def _needs_prompt(args) -> bool:
    return not args.paths or not args.out or (
        args.fiber_type is None and args.cladding_um is None and args.um_per_px is None and args.calibration is None
    )


def _resolve(args, config):
    """Validated run settings and the image list; raises DScopeError for bad arguments."""
    from dscope.batch import collect_images
    from dscope.runner import RunSettings

    settings = RunSettings.create(
        config,
        profile=args.profile,
        fiber_type=args.fiber_type,
        core_um=args.core_um,
        cladding_um=args.cladding_um,
        um_per_px=args.um_per_px,
        calibration_path=args.calibration,
        zones=args.zones.split(",") if args.zones else None,
    )
    if args.save_zones:
        settings = settings.with_output(save_zone_crops=True)
    return settings, collect_images(args.paths, config.io.image_extensions, recursive=args.recursive)


def run(args: argparse.Namespace) -> int:
    from dscope.batch import run_batch
    from dscope.config import load_config
    from dscope.reporting.logs import configure_logging

    config = load_config(args.config)
    interactive = not args.no_prompt and sys.stdin.isatty() and sys.stdout.isatty()
    if interactive and _needs_prompt(args):
        prompt_missing(args, config)
    if not args.paths:
        print("dscope inspect: error: no input PATH given (and no terminal to ask)", file=sys.stderr)
        return EXIT_USAGE
    if not args.out:
        print("dscope inspect: error: --out DIR is required", file=sys.stderr)
        return EXIT_USAGE
    if args.workers is not None and args.workers < 1:
        print("dscope inspect: error: --workers must be at least 1", file=sys.stderr)
        return EXIT_USAGE

    try:
        settings, images = _resolve(args, config)
    except DScopeError as exc:  # every problem with the arguments is a usage error
        print(f"dscope inspect: error: {exc.code}: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    if not images:
        print("dscope inspect: error: no images found in the given paths", file=sys.stderr)
        return EXIT_USAGE

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now().strftime("%Y%m%d_%H%M%S")
    log_file = out / f"dscope_{stamp}.log"
    configure_logging(
        config.logging.console_level if not args.quiet else "warning", log_file, file_level=config.logging.file_level
    )
    import structlog

    log = structlog.get_logger("dscope.batch")
    log.info(
        "batch started", images=len(images), out=str(out), profile=settings.profile,
        fiber_type=settings.fiber_spec.fiber_type, rule_set=settings.rule_set.name,
        config=config.source_path,
    )
    result = run_batch(images, out, settings, workers=args.workers, progress=not args.quiet, log=log)
    counts = result.status_counts
    log.info("batch complete", wall_s=round(result.wall_s, 3), **counts)
    print(
        f"{len(result.docs)} images in {result.wall_s:.1f} s: "
        + ", ".join(f"{k} {v}" for k, v in counts.items())
        + f"\nresults: {out}/  (summary: {out / 'summary_report.csv'}, log: {log_file.name})"
    )
    return EXIT_OK
