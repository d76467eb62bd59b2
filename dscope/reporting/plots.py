"""Batch plots: a summary figure and a polar map of defect positions.

Both functions take result documents (schema ``dscope.result``) and write one
PNG.  They use matplotlib's object API on an Agg canvas (no pyplot, no display,
no global state), so they are safe in worker processes and threads.

Colours match the annotated images: each defect class and each status has one
fixed colour (:data:`dscope.reporting.annotate.DEFECT_COLORS_BGR`,
:data:`~dscope.reporting.annotate.STATUS_COLORS_BGR`).
"""

from __future__ import annotations

import datetime as _dt
import math
import os
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from dscope.inspection.types import DEFECT_TYPES, ZONE_NAMES, Ellipse, FiberGeometry
from dscope.reporting.annotate import (
    DEFECT_COLORS_BGR,
    STATUS_COLORS_BGR,
    UNKNOWN_DEFECT_COLOR_BGR,
    ZONE_COLORS_BGR,
)

__all__ = ["batch_summary_plot", "polar_defect_map", "STATUSES"]

#: Statuses in the order they are plotted.
STATUSES: tuple[str, ...] = ("PASS", "FAIL", "UNGRADED", "ERROR")

#: Zone circle colours on the (white) polar map: darker twins of the image palette.
_ZONE_LINE_RGB = {"core": "#1f77b4", "cladding": "#2ca02c", "adhesive": "#d08a00", "contact": "#8c4aa6"}


#: Angle of the first zone label on the polar map and the step between labels (degrees, counter-clockwise).
_ZONE_LABEL_START_DEG = 62.0
_ZONE_LABEL_STEP_DEG = -24.0


def _rgb(bgr: tuple[int, int, int]) -> tuple[float, float, float]:
    return (bgr[2] / 255.0, bgr[1] / 255.0, bgr[0] / 255.0)


def _type_rgb(t: str) -> tuple[float, float, float]:
    return _rgb(DEFECT_COLORS_BGR.get(t, UNKNOWN_DEFECT_COLOR_BGR))


def _f(x) -> float | None:
    if x is None or isinstance(x, bool):
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _defects(doc: Mapping) -> list[Mapping]:
    return [d for d in (doc.get("defects") or []) if isinstance(d, Mapping)]


def _types_in(docs: Sequence[Mapping]) -> list[str]:
    """Defect classes present, canonical ones first (all canonical ones always listed)."""
    extra = sorted({str(d.get("type")) for doc in docs for d in _defects(doc)} - set(DEFECT_TYPES))
    return list(DEFECT_TYPES) + extra


def _save(fig: Figure, path) -> None:
    path = os.fspath(path)
    tmp = f"{path}.tmp{os.getpid()}.png"
    try:
        FigureCanvasAgg(fig)
        fig.savefig(tmp, dpi=fig.dpi, format="png", facecolor="white")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _stamp(fig: Figure, n_docs: int) -> None:
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    # a figure-level x label gets its own space from the constrained layout, so it never covers an axis label
    fig.supxlabel(f"D-Scope Blink · {n_docs} image(s) · {now}", x=0.995, ha="right", fontsize=7, color="0.45")


# ----------------------------------------------------------------------------------------------------------
# summary figure


def _status_panel(ax, docs: Sequence[Mapping]) -> None:
    counts = Counter(str(d.get("status") or "ERROR").upper() for d in docs)
    labels = list(STATUSES) + sorted(set(counts) - set(STATUSES))
    values = [counts.get(s, 0) for s in labels]
    colors = [_rgb(STATUS_COLORS_BGR.get(s, STATUS_COLORS_BGR["ERROR"])) for s in labels]
    bars = ax.bar(labels, values, color=colors, edgecolor="0.2", linewidth=0.6)
    top = max(values + [1])
    for b, v in zip(bars, values):
        ax.text(b.get_x() + b.get_width() / 2, v + top * 0.02, str(v), ha="center", va="bottom", fontsize=10,
                fontweight="bold")
    ax.set_ylim(0, top * 1.18)
    ax.set_ylabel("images")
    graded = counts.get("PASS", 0) + counts.get("FAIL", 0)
    n = len(docs)
    if graded:
        rate = f"pass rate {100.0 * counts.get('PASS', 0) / graded:.1f} % of graded ({counts.get('PASS', 0)}/{graded})"
    else:
        rate = "pass rate: no graded images"
    ax.set_title(f"Verdicts of {n} image(s)\n{rate}", fontsize=11)
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)


def _zone_type_panel(ax, docs: Sequence[Mapping], types: list[str]) -> None:
    zones_seen = {str(d.get("zone")) for doc in docs for d in _defects(doc)}
    zones = list(ZONE_NAMES) + sorted(zones_seen - set(ZONE_NAMES))
    table = np.zeros((len(types), len(zones)), dtype=int)
    for doc in docs:
        for d in _defects(doc):
            table[types.index(str(d.get("type"))), zones.index(str(d.get("zone")))] += 1
    bottom = np.zeros(len(zones))
    x = np.arange(len(zones))
    for i, t in enumerate(types):
        if table[i].sum() == 0 and t not in DEFECT_TYPES:
            continue
        ax.bar(x, table[i], bottom=bottom, color=_type_rgb(t), edgecolor="0.25", linewidth=0.5, label=t)
        bottom += table[i]
    for xi, tot in zip(x, bottom):
        if tot:
            ax.text(xi, tot, f"{int(tot)}", ha="center", va="bottom", fontsize=9)
    ax.set_xticks(x, zones)
    ax.set_ylim(0, max(1.0, bottom.max()) * 1.15)
    ax.set_ylabel("defects")
    ax.set_title(f"Defects by zone and type ({int(table.sum())} in total)", fontsize=11)
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(fontsize=8, frameon=False, loc="upper right")
    if table.sum() == 0:
        ax.text(0.5, 0.5, "no defects", transform=ax.transAxes, ha="center", va="center", color="0.5", fontsize=12)


def _size_panel(ax, docs: Sequence[Mapping], types: list[str], bins: int) -> None:
    defects = [d for doc in docs for d in _defects(doc)]
    um = bool(defects) and all(_f(d.get("iec_size_um")) is not None for d in defects)
    key, unit = ("iec_size_um", "µm") if um else ("iec_size_px", "px")
    data = {t: np.array([v for d in defects if str(d.get("type")) == t if (v := _f(d.get(key))) is not None])
            for t in types}
    allv = np.concatenate([v for v in data.values() if len(v)]) if any(len(v) for v in data.values()) else None
    ax.set_title("IEC size of defects (scratch/crack: width; others: diameter)", fontsize=11)
    ax.set_xlabel(f"size [{unit}]")
    ax.set_ylabel("defects")
    if allv is None:
        ax.text(0.5, 0.5, "no defects", transform=ax.transAxes, ha="center", va="center", color="0.5", fontsize=12)
        return
    edges = np.histogram_bin_edges(allv, bins=bins) if allv.max() > allv.min() else np.array(
        [allv.min() - 0.5, allv.max() + 0.5])
    present = [t for t in types if len(data[t])]
    ax.hist([data[t] for t in present], bins=edges, stacked=True, color=[_type_rgb(t) for t in present],
            edgecolor="0.25", linewidth=0.5, label=present)
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(fontsize=8, frameon=False)


def _time_panel(ax, docs: Sequence[Mapping], bins: int) -> None:
    t = np.array([v for d in docs if (v := _f((d.get("timings_s") or {}).get("total"))) is not None])
    ax.set_title("Processing time per image", fontsize=11)
    ax.set_xlabel("time [s]")
    ax.set_ylabel("images")
    if len(t) == 0:
        ax.text(0.5, 0.5, "no timings", transform=ax.transAxes, ha="center", va="center", color="0.5", fontsize=12)
        return
    edges = np.histogram_bin_edges(t, bins=bins) if t.max() > t.min() else np.array([t.min() * 0.9, t.max() * 1.1 + 1e-3])
    ax.hist(t, bins=edges, color="#6b8fb5", edgecolor="0.25", linewidth=0.5)
    med, p95 = float(np.median(t)), float(np.percentile(t, 95))
    ax.axvline(med, color="0.15", lw=1.2, ls="--", label=f"median {med:.3g} s")
    ax.axvline(p95, color="#c0392b", lw=1.2, ls=":", label=f"95th pct {p95:.3g} s")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(fontsize=8, frameon=False)


def batch_summary_plot(
    docs: Sequence[Mapping],
    path: str | os.PathLike,
    *,
    width_in: float = 12.0,
    height_in: float = 8.0,
    dpi: int = 100,
    hist_bins: int = 20,
) -> None:
    """Write the batch summary figure (PNG of ``width_in * dpi`` x ``height_in * dpi`` pixels).

    Four panels: verdict counts with the pass rate (PASS over PASS + FAIL),
    defects per zone stacked by class, a stacked histogram of IEC defect sizes
    (µm when every defect has a scale, else px) and the processing time per image.

    Parameters
    ----------
    docs : sequence of Mapping
        Result documents of the batch (ERROR documents count as verdicts only).
    path : str or os.PathLike
        Output PNG; written atomically (temporary file, then rename).
    width_in, height_in, dpi : float, float, int
        Figure size in inches and resolution.
    hist_bins : int
        Number of histogram bins.

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "batch.png")
    >>> batch_summary_plot([{"status": "PASS", "defects": [], "timings_s": {"total": 0.4}}], p)
    >>> os.path.getsize(p) > 0
    True
    """
    if width_in <= 0 or height_in <= 0 or dpi <= 0 or hist_bins < 1:
        raise ValueError("batch_summary_plot: width_in, height_in, dpi and hist_bins must be positive")
    docs = [d for d in docs if isinstance(d, Mapping)]
    types = _types_in(docs)
    fig = Figure(figsize=(width_in, height_in), dpi=dpi, layout="constrained")
    axs = fig.subplots(2, 2)
    _status_panel(axs[0, 0], docs)
    _zone_type_panel(axs[0, 1], docs, types)
    _size_panel(axs[1, 0], docs, types, hist_bins)
    _time_panel(axs[1, 1], docs, hist_bins)
    fig.suptitle("D-Scope Blink — batch summary", fontsize=14, fontweight="bold")
    _stamp(fig, len(docs))
    _save(fig, path)


# ----------------------------------------------------------------------------------------------------------
# polar map


def _geometry(fiber: Mapping) -> FiberGeometry | None:
    c = fiber.get("center_px")
    r = _f(fiber.get("cladding_radius_px"))
    if not c or len(c) != 2 or r is None or r <= 0 or _f(c[0]) is None or _f(c[1]) is None:
        return None
    e = fiber.get("cladding_ellipse_px")
    ell = None
    if isinstance(e, Mapping):
        a, b, ang = _f(e.get("semi_major_px")), _f(e.get("semi_minor_px")), _f(e.get("angle_deg")) or 0.0
        ec = e.get("center_px") or c
        if a and b and a > 0 and b > 0:
            ell = Ellipse((float(ec[0]), float(ec[1])), max(a, b), min(a, b), ang)
    return FiberGeometry(center_px=(float(c[0]), float(c[1])), cladding_radius_px=r, cladding_ellipse=ell)


def _polar_points(docs: Sequence[Mapping]) -> tuple[str, list[dict]]:
    """Mode (``"um"`` or ``"norm"``) and the defect points in the fiber frame (x right, y down)."""
    with_defects = [d for d in docs if _defects(d) and isinstance(d.get("fiber"), Mapping)]
    um_mode = bool(with_defects) and all(
        _f(doc["fiber"].get("um_per_px")) is not None
        and all(
            isinstance(x.get("centroid_um"), (list, tuple)) and len(x["centroid_um"]) == 2
            and _f(x["centroid_um"][0]) is not None and _f(x["centroid_um"][1]) is not None
            for x in _defects(doc)
        )
        for doc in with_defects
    )
    pts = []
    for doc in with_defects:
        violating = {str(i) for v in doc.get("violations") or [] if isinstance(v, Mapping) for i in v.get("defect_ids") or []}
        geo = None if um_mode else _geometry(doc["fiber"])
        for x in _defects(doc):
            if um_mode:
                dx, dy = float(x["centroid_um"][0]), float(x["centroid_um"][1])
                clad_um = 2.0 * (_f(doc["fiber"].get("cladding_radius_px")) or 0.0) * _f(doc["fiber"].get("um_per_px"))
                rel = (_f(x.get("iec_size_um")) or 0.0) / clad_um if clad_um > 0 else 0.0
            else:
                c = x.get("centroid_px")
                if geo is None or not c or len(c) != 2 or _f(c[0]) is None or _f(c[1]) is None:
                    continue
                n = geo.to_normalized(np.array([[float(c[0]), float(c[1])]]))[0] / geo.cladding_radius_px
                dx, dy = float(n[0]), float(n[1])
                rel = (_f(x.get("iec_size_px")) or 0.0) / (2.0 * geo.cladding_radius_px)
            pts.append({"dx": dx, "dy": dy, "type": str(x.get("type")), "violating": str(x.get("id")) in violating,
                        "rel_size": rel})
    return ("um" if um_mode else "norm"), pts


def _reference_zones(docs: Sequence[Mapping], mode: str) -> tuple[str | None, list[tuple[str, float, float | None]]]:
    """Most common rule set and (name, radius in plot units, diameter um) of its zones."""
    sets = Counter(str(d.get("rule_set")) for d in docs if d.get("zones") and isinstance(d.get("fiber"), Mapping))
    if not sets:
        return None, []
    ref_set = sets.most_common(1)[0][0]
    ref = next(d for d in docs if str(d.get("rule_set")) == ref_set and d.get("zones") and isinstance(d.get("fiber"), Mapping))
    r_clad = _f(ref["fiber"].get("cladding_radius_px"))
    out = []
    for z in ref["zones"]:
        if not isinstance(z, Mapping):
            continue
        d_um, r_px = _f(z.get("outer_um")), _f(z.get("outer_px"))
        if mode == "um":
            if d_um is None:
                continue
            out.append((str(z.get("name")), d_um / 2.0, d_um))
        else:
            if r_px is None or not r_clad:
                continue
            out.append((str(z.get("name")), r_px / r_clad, d_um))
    return ref_set, out


def polar_defect_map(
    docs: Sequence[Mapping],
    path: str | os.PathLike,
    *,
    size_in: float = 8.0,
    dpi: int = 100,
    marker_size_pt2: float = 28.0,
    marker_size_gain_pt2: float = 900.0,
    marker_alpha: float = 0.85,
) -> None:
    """Write a polar map of every defect centroid of the batch in the fiber frame.

    In micrometres (``centroid_um``, relative to the fiber centre) when every
    document with defects has a scale, otherwise normalised by the cladding
    radius (1.0 = cladding edge; elliptical fibers are mapped to their circular
    frame first).  Zone circles of the most common rule set are drawn and
    labelled with their diameters.  Angles are as seen in the images (up on the
    plot = up in the image).  Markers are coloured by class and grow with the
    defect's IEC size; defects named in a violation get a black ring.

    Parameters
    ----------
    docs : sequence of Mapping
        Result documents of the batch; ERROR documents contribute nothing.
    path : str or os.PathLike
        Output PNG (``size_in * dpi`` pixels square), written atomically.
    size_in, dpi : float, int
        Figure size (square) and resolution.
    marker_size_pt2, marker_size_gain_pt2 : float
        Marker area of a point-like defect, and extra area per unit of
        (IEC size / cladding diameter).
    marker_alpha : float
        Marker opacity (overlapping defects stay visible below 1).

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "polar.png")
    >>> polar_defect_map([], p)
    >>> os.path.getsize(p) > 0
    True
    """
    if size_in <= 0 or dpi <= 0 or marker_size_pt2 <= 0 or marker_size_gain_pt2 < 0 or not 0 < marker_alpha <= 1:
        raise ValueError("polar_defect_map: size_in, dpi and marker sizes must be positive, marker_alpha in (0, 1]")
    docs = [d for d in docs if isinstance(d, Mapping)]
    mode, pts = _polar_points(docs)
    rule_set, zones = _reference_zones(docs, mode)
    fig = Figure(figsize=(size_in, size_in), dpi=dpi, layout="constrained")
    ax = fig.add_subplot(projection="polar")
    ax.set_theta_zero_location("E")
    ax.set_theta_direction(1)

    r_pts = np.array([math.hypot(p["dx"], p["dy"]) for p in pts]) if pts else np.zeros(0)
    r_max = max([z[1] for z in zones] + ([float(r_pts.max())] if len(r_pts) else []) + [1e-9])
    if not zones and not len(r_pts):
        r_max = 62.5 if mode == "um" else 1.0
    r_max *= 1.08

    theta_c = np.linspace(0, 2 * np.pi, 361)
    for i, (name, r, d_um) in enumerate(zones):
        color = _ZONE_LINE_RGB.get(name, "0.4")
        ax.plot(theta_c, np.full_like(theta_c, r), color=color, lw=1.3, ls="--", zorder=1)
        if i == 0:
            ax.fill_between(theta_c, 0, r, color=_rgb(ZONE_COLORS_BGR.get(name, (230, 230, 230))), alpha=0.35, zorder=0)
        label = f"{name} Ø{d_um:g} µm" if d_um is not None else name
        ang = math.radians(_ZONE_LABEL_START_DEG + _ZONE_LABEL_STEP_DEG * i)
        ax.annotate(label, xy=(ang, r), xytext=(4, 4), textcoords="offset points", fontsize=9, color=color,
                    fontweight="bold", bbox=dict(boxstyle="round,pad=0.2", fc="white", ec=color, lw=0.6, alpha=0.85),
                    zorder=4)

    types = _types_in(docs)
    for t in types:
        sel = [p for p in pts if p["type"] == t]
        if not sel:
            continue
        th = np.array([math.atan2(-p["dy"], p["dx"]) for p in sel])
        rr = np.array([math.hypot(p["dx"], p["dy"]) for p in sel])
        s = np.array([marker_size_pt2 + marker_size_gain_pt2 * p["rel_size"] for p in sel])
        edge = ["black" if p["violating"] else "0.35" for p in sel]
        lw = [1.6 if p["violating"] else 0.4 for p in sel]
        ax.scatter(th, rr, s=s, c=[_type_rgb(t)], edgecolors=edge, linewidths=lw, alpha=marker_alpha, zorder=3)

    ax.set_rlim(0, r_max)
    ax.set_rlabel_position(100)
    ax.tick_params(axis="y", labelsize=8, colors="0.35")
    ax.tick_params(axis="x", labelsize=8, colors="0.35")
    ax.grid(alpha=0.25)
    unit = "radius in µm from the fiber centre" if mode == "um" else "radius in cladding radii (1 = cladding edge)"
    n_img = sum(1 for d in docs if _defects(d))
    ax.set_title(
        f"Defect positions: {len(pts)} defect(s) in {n_img} of {len(docs)} image(s)\n{unit}\n"
        "up = image top, as seen in the images",
        fontsize=10, pad=14,
    )
    counts = Counter(p["type"] for p in pts)
    handles = [
        Line2D([], [], marker="o", ls="", markersize=8, markerfacecolor=_type_rgb(t), markeredgecolor="0.35",
               label=f"{t} ({counts.get(t, 0)})")
        for t in types
        if counts.get(t, 0) or t in DEFECT_TYPES
    ]
    handles.append(Line2D([], [], marker="o", ls="", markersize=8, markerfacecolor="white", markeredgecolor="black",
                          markeredgewidth=1.6, label="named in a violation"))
    zone_label = "zone boundary" + (f"\n({rule_set})" if rule_set and rule_set != "None" else "")
    handles.append(Patch(facecolor="none", edgecolor="0.4", ls="--", label=zone_label))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(-0.08, 1.02), fontsize=8, frameon=True,
              framealpha=0.9)
    if not pts:
        ax.text(0.5, 0.5, "no defects", transform=ax.transAxes, ha="center", va="center", color="0.5", fontsize=14)
    _stamp(fig, len(docs))
    _save(fig, path)
