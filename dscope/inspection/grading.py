"""PASS/FAIL grading of measured defects against a rule set (pure).

:func:`grade` is a pure function of (defects, rule set, whether a micrometre
scale is known): no image, no I/O.  The rules it applies:

* **Class** of a defect: ``scratch`` -> scratch limits, ``crack`` -> crack
  limits, ``pit``/``chip``/``contamination`` -> defect limits
  (:data:`dscope.inspection.rules.CLASS_OF_TYPE`).
* **Size**: width for scratches and cracks, smallest-enclosing-circle diameter
  for the others (:attr:`Defect.iec_size_um` / ``iec_size_px``), in the rule
  set's units.  Sizes are **rounded to** ``rule_set.size_decimals`` decimals
  (default 2, i.e. 0.01 um, the reporting precision) before they are compared
  with the bin edges, so float noise such as 3.0000000004 um counts as 3 um,
  exactly at the edge, and a reported "3 um" grades as 3 um.
* **Zones**: with ``zone_assignment == "touched"`` (the default) a defect
  counts in every zone it touches (``zones_touched`` plus its centroid
  ``zone``); with ``"centroid"`` only in its centroid zone.  Zone names the rule
  set does not have (e.g. outside the outermost zone) are not graded.
* **Limits**: in each zone, class and bin, ``max_count == 0`` gives one
  violation per defect in the bin; ``max_count == n`` gives one violation when
  more than ``n`` defects fall in the bin; ``None`` never fails.
* **Guard band** (decision rule, ISO 14253-1 "guarded acceptance"):
  ``guard_band_px`` pixels, converted with each defect's own micrometres per
  pixel, are added to its size before binning, so a defect measured just under
  a limit, within the measurement's pixel resolution, is graded as over it.
  ``0`` (the default of this function, used for ground truth) is simple
  acceptance; the pipeline takes the configuration's ``grading.guard_band_px``.
  The same band applies to zone membership (``zone_assignment == "touched"``):
  a defect whose radial extent (:attr:`Defect.radial_extent_um` /
  ``radial_extent_px``) ends within the band of a zone also counts in that
  zone, since the zone boundaries come from a cladding edge fitted to about a
  pixel.  Messages give the measured size and the guard band, and say when a
  zone was reached only within the band.
* **UNGRADED**: a rule set in ``um`` without a micrometre scale; a defect in
  a graded zone whose size is missing, negative or not finite, or whose type
  is unknown; no zone left to grade.  Never PASS on missing information.

Images whose localization failed never reach :func:`grade`: the pipeline marks
them ERROR.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence

import numpy as np

from dscope.errors import DScopeError
from dscope.inspection.rules import CLASS_OF_TYPE, RULE_CLASSES, Bin, RuleSet, fmt_number
from dscope.inspection.types import Defect, Grade, Violation

_PLURAL = {"scratch": "scratches", "defect": "defects", "crack": "cracks"}
_MEASURE = {"scratch": "wide", "crack": "wide", "defect": "diameter"}


def defect_zones(defect: Defect, rule_set: RuleSet) -> list[str]:
    """Zones (of the rule set, inner to outer) in which ``defect`` is counted.

    Examples
    --------
    >>> from dscope.inspection.rules import load_rule_set
    >>> rs = load_rule_set("iec61300-3-35-ed2-sm-pc")
    >>> d = make_defect("s1", "scratch", "cladding", ["core", "cladding"], 1.0)
    >>> defect_zones(d, rs)
    ['core', 'cladding']
    """
    if rule_set.zone_assignment == "centroid":
        wanted = {defect.zone}
    else:
        wanted = set(defect.zones_touched or ()) | {defect.zone}
    return [z for z in rule_set.zone_names if z in wanted]


def _size(defect: Defect, rule_set: RuleSet) -> float | None:
    raw = defect.iec_size_um if rule_set.units == "um" else defect.iec_size_px
    if raw is None:
        return None
    raw = float(raw)
    if not math.isfinite(raw) or raw < 0:
        return None
    return round(raw, rule_set.size_decimals)


def _guard(defect: Defect, rule_set: RuleSet, guard_band_px: float) -> float:
    """The guard band in the rule set's units for this defect (its own um per px: anisotropic scales)."""
    if guard_band_px <= 0:
        return 0.0
    if rule_set.units == "px":
        return guard_band_px
    um, px = defect.iec_size_um, defect.iec_size_px
    if um is None or not px or not math.isfinite(float(um)) or not math.isfinite(float(px)) or float(px) <= 0:
        return 0.0  # no per-defect scale (a zero-size defect): the measured size alone
    return guard_band_px * float(um) / float(px)


def guarded_zones(defect: Defect, rule_set: RuleSet, guard: float) -> list[str]:
    """Zones (inner to outer) that ``defect``'s radial extent, widened by ``guard`` (rule-set units), reaches.

    Empty unless the rule set counts touched zones, ``guard > 0`` and the
    defect's radial extent is known in the rule set's units.  Zones are
    half-open annuli ``[inner, outer)`` of the rule set's radii (half its
    diameters).  The zones a defect reaches *only* within the band are these
    minus :func:`defect_zones`.

    Examples
    --------
    >>> from dscope.inspection.rules import load_rule_set
    >>> rs = load_rule_set("iec61300-3-35-ed2-sm-pc")  # cladding zone ends at radius 57.5 um
    >>> d = make_defect("c1", "chip", "adhesive", ["adhesive"], 17.6)
    >>> d.radial_extent_um = (57.8, 66.0)
    >>> guarded_zones(d, rs, 0.5), guarded_zones(d, rs, 0.2)
    (['cladding', 'adhesive'], ['adhesive'])
    """
    if guard <= 0 or rule_set.zone_assignment != "touched":
        return []
    extent = defect.radial_extent_um if rule_set.units == "um" else defect.radial_extent_px
    if extent is None:
        return []
    lo, hi = float(extent[0]) - guard, float(extent[1]) + guard
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    return [z.name for z in rule_set.zone_defs() if lo < z.outer_um / 2.0 and hi >= z.inner_um / 2.0]


def _bin_of(bins: Sequence[Bin], size: float) -> int | None:
    for i, b in enumerate(bins):
        if b.contains(size):
            return i
    return None  # a gap (only possible with allow_bin_gaps): not limited


def _single_message(defect: Defect, size: float, b: Bin, cls: str, zone: str, unit: str, guard: float = 0.0) -> str:
    s = f"{defect.type} {fmt_number(size)} {unit} {_MEASURE[cls]}"
    if guard > 0:
        s += f" (+{fmt_number(guard)} {unit} guard band)"
    starts_at_zero = b.lo == 0 and b.min_inclusive
    if b.max is None and not starts_at_zero:
        op = ">=" if b.min_inclusive else ">"
        return f"{s} {op} {fmt_number(b.lo)} {unit} limit in {zone}"
    if starts_at_zero and b.max is None:
        return f"{s} in {zone}, no {cls} allowed"
    return f"{s} in {zone}: {_PLURAL[cls]} {b.describe(unit)} not allowed"


_ZONE_GUARD_NOTE = " (reaches the zone within the guard band)"


def grade(
    defects: Sequence[Defect],
    rule_set: RuleSet,
    *,
    scale_known: bool,
    analyzed_zones: Collection[str] | None = None,
    guard_band_px: float = 0.0,
) -> Grade:
    """Grade measured defects against a rule set.

    Parameters
    ----------
    defects : sequence of Defect
        Measured, classified defects (``zone``, ``zones_touched``, sizes).
    rule_set : RuleSet
        The limits to apply.
    scale_known : bool
        Whether a micrometre scale was established for the image.  A rule set
        in ``um`` without a scale gives UNGRADED; a rule set in ``px`` is
        graded on the ``_px`` sizes either way.
    analyzed_zones : collection of str, optional
        Zones the analysis was restricted to (default: all zones of the rule
        set).  Only these are graded and ``Grade.reason`` names the zones
        that were not, so a partial analysis never passes silently.
    guard_band_px : float, optional
        Guarded acceptance: this many pixels (converted with each defect's own
        um per px) are added to every size before it is binned; 0 (default)
        grades the sizes as measured.

    Returns
    -------
    Grade
        ``status`` PASS / FAIL / UNGRADED; ``violations`` (zone, rule id such
        as ``"cladding.defect[2,5]"``, sentence, defect ids) in zone, class,
        bin order; ``reason`` for UNGRADED and for partial analyses.

    Raises
    ------
    DScopeError
        ``bad_argument`` when ``analyzed_zones`` names a zone the rule set does not have.

    Examples
    --------
    >>> from dscope.inspection.rules import load_rule_set
    >>> rs = load_rule_set("iec61300-3-35-ed2-sm-pc")
    >>> g = grade([make_defect("s1", "scratch", "cladding", ["cladding"], 4.2)], rs, scale_known=True)
    >>> g.status, g.violations[0].message
    ('FAIL', 'scratch 4.2 um wide > 3 um limit in cladding')
    >>> grade([], rs, scale_known=False).status
    'UNGRADED'
    >>> pit = make_defect("p1", "pit", "cladding", ["cladding"], 4.9, size_px=14.0)  # 0.35 um/px
    >>> grade([pit], rs, scale_known=True).status
    'PASS'
    >>> grade([pit], rs, scale_known=True, guard_band_px=1.0).violations[0].message
    'pit 4.9 um diameter (+0.35 um guard band) > 5 um limit in cladding'
    """
    if not (math.isfinite(guard_band_px) and guard_band_px >= 0):
        raise DScopeError("bad_argument", f"guard_band_px must be a finite number >= 0, got {guard_band_px!r}")
    unit = rule_set.units
    if unit == "um" and not scale_known:
        return Grade(
            status="UNGRADED",
            reason=(
                f"no micrometre scale: rule set {rule_set.name!r} has limits in um; give --um-per-px, "
                "--cladding-um, a calibration or an explicit fiber type (or use a rule set in px)"
            ),
        )
    zones = rule_set.zone_names
    if analyzed_zones is None:
        graded = list(zones)
    else:
        unknown = sorted(set(analyzed_zones) - set(zones))
        if unknown:
            raise DScopeError(
                "bad_argument",
                f"analyzed zones {unknown} are not zones of rule set {rule_set.name!r} ({', '.join(zones)})",
            )
        graded = [z for z in zones if z in set(analyzed_zones)]
    skipped = [z for z in zones if z not in graded]
    partial_note = (
        f"analysis restricted to zones {', '.join(graded)}; zones {', '.join(skipped)} not graded" if skipped else None
    )
    if not graded:
        return Grade(status="UNGRADED", reason=f"no zone of rule set {rule_set.name!r} was analyzed")

    # (zone, class) -> list of (defect, rounded measured size, guard band, zone reached only within the band)
    buckets: dict[tuple[str, str], list[tuple[Defect, float, float, bool]]] = {}
    graded_set = set(graded)
    for d in defects:
        measured_in = defect_zones(d, rule_set)
        guard = round(_guard(d, rule_set, guard_band_px), rule_set.size_decimals)
        near = set(guarded_zones(d, rule_set, guard)) - set(measured_in)
        counted_in = [z for z in zones if (z in near or z in measured_in) and z in graded_set]
        if not counted_in:
            continue  # outside every graded zone
        cls = CLASS_OF_TYPE.get(d.type)
        if cls is None:
            return Grade(status="UNGRADED", reason=f"defect {d.id}: unknown type {d.type!r}, cannot be graded")
        size = _size(d, rule_set)
        if size is None:
            raw = d.iec_size_um if unit == "um" else d.iec_size_px
            return Grade(status="UNGRADED", reason=f"defect {d.id}: no valid size in {unit} (got {raw!r})")
        for z in counted_in:
            buckets.setdefault((z, cls), []).append((d, size, guard, z in near))

    violations: list[Violation] = []
    for z in graded:
        for cls in RULE_CLASSES:
            members = buckets.get((z, cls), [])
            if not members:
                continue
            bins = rule_set.bins(z, cls)
            per_bin: dict[int, list[tuple[Defect, float, float, bool]]] = {}
            for d, size, guard, near_zone in members:
                i = _bin_of(bins, round(size + guard, rule_set.size_decimals))
                if i is not None:
                    per_bin.setdefault(i, []).append((d, size, guard, near_zone))
            for i, b in enumerate(bins):
                inside = per_bin.get(i, [])
                if b.max_count is None or len(inside) <= b.max_count:
                    continue
                rule = f"{z}.{cls}{b.label()}"
                if b.max_count == 0:
                    for d, size, guard, near_zone in inside:
                        msg = _single_message(d, size, b, cls, z, unit, guard) + (_ZONE_GUARD_NOTE if near_zone else "")
                        violations.append(Violation(zone=z, rule=rule, message=msg, defect_ids=[d.id]))
                else:
                    msg = f"{len(inside)} {_PLURAL[cls]} {b.describe(unit)} in {z}, {b.max_count} allowed"
                    if any(guard > 0 for _, _, guard, _ in inside):
                        msg += f" (sizes with the {fmt_number(guard_band_px)} px guard band)"
                    n_near = sum(near_zone for _, _, _, near_zone in inside)
                    if n_near:
                        msg += f" ({n_near} of them reach the zone within the guard band)"
                    ids = [d.id for d, _, _, _ in inside]
                    violations.append(Violation(zone=z, rule=rule, message=msg, defect_ids=ids))
    return Grade(status="FAIL" if violations else "PASS", violations=violations, reason=partial_note,
                 guard_band_px=float(guard_band_px))


def failure_reasons(result: Grade) -> str:
    """The violations' sentences joined with ``"; "`` (the summary CSV's Failure_Reason(s) column)."""
    return "; ".join(v.message for v in result.violations)


def make_defect(
    id: str,
    type: str,
    zone: str,
    zones_touched: Sequence[str],
    size_um: float | None,
    *,
    size_px: float | None = None,
) -> Defect:
    """A minimal :class:`Defect` for grading (tests, benchmarks, truth-side verdicts).

    ``size_um``/``size_px`` set the IEC size (width for scratch and crack,
    diameter otherwise); the other measurements are zero.  ``size_px``
    defaults to ``size_um`` (i.e. one pixel per micrometre) when not given.

    Examples
    --------
    >>> make_defect("p1", "pit", "core", ["core"], 1.5).diameter_um
    1.5
    """
    px = size_px if size_px is not None else (size_um if size_um is not None else 0.0)
    linear = CLASS_OF_TYPE.get(type) in ("scratch", "crack")
    return Defect(
        id=id,
        type=type,
        zone=zone,
        zones_touched=list(zones_touched),
        centroid_px=(0.0, 0.0),
        contour_px=np.zeros((0, 2), dtype=np.int32),
        bbox_px=(0, 0, 0, 0),
        area_px=0.0,
        length_px=0.0,
        width_px=px if linear else 0.0,
        diameter_px=0.0 if linear else px,
        orientation_deg=0.0,
        aspect_ratio=1.0,
        circularity=0.0,
        solidity=0.0,
        tortuosity=1.0,
        contrast=0.0,
        cnr=0.0,
        confidence=1.0,
        detected_by=[],
        width_um=size_um if linear else None,
        diameter_um=None if linear else size_um,
    )
