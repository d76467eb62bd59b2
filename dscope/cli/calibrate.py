"""``dscope calibrate IMAGE --dot-spacing-um 10 | --cladding-um 125 [--out calibration.json]``.

Measures micrometres per pixel from an image of a stage-micrometer dot grid
(``--dot-spacing-um``) or of a reference fiber of known cladding diameter
(``--cladding-um``), writes ``calibration.json`` (value, uncertainty, dots used,
timestamp) and appends the run to the calibration history CSV.

Also runnable as ``python -m dscope.cli.calibrate IMAGE ...``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (v > 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return v


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", metavar="IMAGE", help="image of the calibration target")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--dot-spacing-um", type=_positive_float, metavar="UM", help="pitch of the stage-micrometer dot grid")
    target.add_argument("--cladding-um", type=_positive_float, metavar="UM", help="cladding diameter of a reference fiber")
    p.add_argument("--out", metavar="FILE", help="calibration file to write (default: scale.calibration_file of the config)")
    p.add_argument("--history", metavar="CSV", help="history CSV to append to (default: calibration_history.csv beside --out)")
    p.add_argument("--config", metavar="FILE", help="configuration file (default: the shipped one)")
    p.add_argument("--profile", metavar="NAME", help="processing profile for --cladding-um localization (default: the config's)")
    p.add_argument("--json", action="store_true", help="print the written document as JSON")


def register(sub) -> None:
    p = sub.add_parser(
        "calibrate",
        help="measure um/px from a dot grid or a reference fiber and write calibration.json",
        description=__doc__.split("\n\n")[0],
    )
    add_arguments(p)
    p.set_defaults(func=run)


def run(args) -> int:
    """Run one calibration; raises :class:`dscope.errors.DScopeError` (handled by the CLI) on failure."""
    from dscope.calibration_io import write_calibration
    from dscope.config import load_config
    from dscope.inspection.calibration import calibrate_dot_grid, calibrate_reference_fiber
    from dscope.runner import read_image_file

    cfg = load_config(args.config)
    gray, _info = read_image_file(args.image, cfg)
    if args.dot_spacing_um is not None:
        result = calibrate_dot_grid(gray, args.dot_spacing_um, cfg.calibration)
    else:
        result = calibrate_reference_fiber(gray, args.cladding_um, cfg.profile(args.profile).localization)
    out = Path(args.out or cfg.scale.calibration_file)
    doc = write_calibration(result, out, image_path=args.image, history_csv=args.history)
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        rel = 100.0 * result.uncertainty_um_per_px / result.um_per_px
        used = f", {result.n_dots} dots" if result.method == "dot_grid" else ""
        print(
            f"OK {result.method}: {result.um_per_px:.6g} um/px +- {result.uncertainty_um_per_px:.2g} ({rel:.3f} %){used}"
            f" -> {out} (history {doc['history_csv']})"
        )
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m dscope.cli.calibrate``."""
    from dscope.errors import DScopeError

    parser = argparse.ArgumentParser(prog="python -m dscope.cli.calibrate", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except DScopeError as exc:
        print(f"dscope calibrate: error: {exc.code}: {exc.message}", file=sys.stderr)
        return EXIT_USAGE if exc.code in ("config_invalid", "bad_argument") else EXIT_FAILED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
