"""``dscope synth``: write synthetic end-face images with their ground truth.

Each image ``<name>.png`` gets ``<name>.truth.json`` beside it (the truth of
:func:`dscope.synth.render` plus the spec that reproduces it).  The default
scenario ``demo`` mixes clean and defective fibers of several types and a
no-fiber frame.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from dscope.errors import DScopeError

#: Defaults of the command (image size = the bench camera).
DEFAULT_N = 12
DEFAULT_WIDTH, DEFAULT_HEIGHT = 2048, 1536
#: Dot-grid defaults: pitch of a typical stage micrometer and a 400x scope scale.
DOT_GRID_SPACING_UM = 10.0
DOT_GRID_UM_PER_PX = (0.2, 0.6)
DOT_GRID_MAX_ROTATION_DEG = 5.0


def register(sub) -> None:
    from dscope.synth import LOCALIZATION_CONDITIONS, SCENARIOS

    p = sub.add_parser(
        "synth",
        help="write synthetic end-face images with ground truth",
        description="Render synthetic fiber end-face images (<name>.png) and their ground truth "
        "(<name>.truth.json) into a folder.",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    p.add_argument("--n", type=int, default=DEFAULT_N, help=f"number of images (default {DEFAULT_N})")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0); same seed, same images")
    p.add_argument("--scenario", default="demo", choices=list(SCENARIOS),
                   help="what to draw (default demo: a mix of PASS and FAIL looking fibers and a no-fiber frame)")
    p.add_argument("--condition", choices=list(LOCALIZATION_CONDITIONS), default=None,
                   help="with --scenario localization: force this hard condition (default: random per image)")
    p.add_argument("--width", type=int, default=DEFAULT_WIDTH, help=f"image width px (default {DEFAULT_WIDTH})")
    p.add_argument("--height", type=int, default=DEFAULT_HEIGHT, help=f"image height px (default {DEFAULT_HEIGHT})")
    p.add_argument("--bit-depth", type=int, default=8, choices=(8, 16), help="8 (default) or 16-bit PNG")
    p.add_argument("--dot-grid", action="store_true", help="write stage-micrometer dot-grid calibration images instead")
    p.set_defaults(func=run)


def _write(out: Path, name: str, img, truth: dict) -> None:
    import cv2

    png = out / f"{name}.png"
    if not cv2.imwrite(str(png), img):
        raise DScopeError("internal_error", f"could not write {png}")
    (out / f"{name}.truth.json").write_text(json.dumps(truth, indent=1) + "\n", encoding="utf-8")


def run(args) -> int:
    import numpy as np

    from dscope.synth import make_dot_grid, render, scenario_specs

    if args.n < 0:
        raise DScopeError("bad_argument", f"--n must be >= 0, got {args.n}")
    from dscope.synth.spec import MAX_PIXELS, MAX_SIDE_PX, MIN_SIDE_PX

    if not (MIN_SIDE_PX <= args.width <= MAX_SIDE_PX and MIN_SIDE_PX <= args.height <= MAX_SIDE_PX) \
            or args.width * args.height > MAX_PIXELS:
        raise DScopeError("bad_argument", f"--width/--height must be {MIN_SIDE_PX}..{MAX_SIDE_PX} px and at most "
                          f"{MAX_PIXELS} pixels, got {args.width}x{args.height}")
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DScopeError("bad_argument", f"cannot create output folder {out}: {exc.strerror}") from None
    if args.dot_grid:
        for i in range(args.n):
            rng = np.random.default_rng([args.seed, i])
            upp = float(rng.uniform(*DOT_GRID_UM_PER_PX))
            img, truth = make_dot_grid(
                args.width, args.height, spacing_um=DOT_GRID_SPACING_UM, um_per_px=upp,
                rotation_deg=float(rng.uniform(-DOT_GRID_MAX_ROTATION_DEG, DOT_GRID_MAX_ROTATION_DEG)),
                n_missing=int(rng.integers(0, 4)), n_extra=int(rng.integers(0, 3)),
                seed=int(rng.integers(0, 2**31 - 1)), bit_depth=args.bit_depth,
            )
            _write(out, f"dotgrid_s{args.seed}_{i:04d}", img, truth)
        print(f"wrote {args.n} dot-grid images to {out}")
        return 0
    n = 0
    if args.condition and args.scenario != "localization":
        raise DScopeError("bad_argument", "--condition needs --scenario localization")
    specs = scenario_specs(args.seed, args.n, args.scenario, condition=args.condition, width=args.width,
                           height=args.height, bit_depth=args.bit_depth)
    for i, spec in enumerate(specs):
        img, truth = render(spec)
        doc = truth.to_dict()
        doc["spec"] = spec.to_dict()
        _write(out, f"synth_s{args.seed}_{i:04d}_{spec.scenario}", img, doc)
        n += 1
    print(f"wrote {n} images with ground truth to {out}", file=sys.stdout)
    return 0
