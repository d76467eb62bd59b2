"""Grading rule sets: IEC 61300-3-35 tables (and in-house variants) kept as data.

A rule set is a JSON file in ``config/rules/`` (see ``config/rules/README.md``
for the format).  It names its zones (annuli between two diameters) and, per
zone and per *class* of feature, a list of size bins, each with a maximum
count.  The classes are

``scratch``
    linear features, sized by their **width**;
``defect``
    every non-linear feature (pits, chips, contamination), sized by the
    diameter of the **smallest enclosing circle**;
``crack``
    cracks, sized by their **width**.  A zone that gives no ``crack`` bins
    allows **no** crack of any size (conservative default; write explicit bins
    to allow cracks, as the shipped rule sets do for adhesive and contact).

A bin is ``{"min", "min_inclusive", "max", "max_inclusive", "max_count"}``;
``min: null`` means 0, ``max: null`` means no upper bound, ``max_count: null``
means no limit and ``0`` means none allowed.  Within a class the bins must be
listed in ascending order, must not overlap and must cover ``[0, inf)`` unless
the rule set sets ``"allow_bin_gaps": true`` (a size that falls in a gap is then
not limited).

Loading validates the whole file; a problem raises
:class:`dscope.errors.ConfigError` (code ``rule_set_invalid``) whose message
names the file and the dotted key, e.g.::

    rule_set_invalid: config/rules/x.json: limits.cladding.defect[1]: overlaps
    the previous bin [0,2] (both include 2)

Unlike the pure stages of :mod:`dscope.inspection`, this module reads files
(``load_rule_set``/``list_rule_sets``); the model itself and
:func:`parse_rule_set` are pure.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, model_validator

from dscope.config import config_dir, strip_comments
from dscope.errors import ConfigError
from dscope.jsonio import read_json_file
from dscope.inspection.types import DEFECT_TYPES, ZoneDef
from dscope.params import StrictModel

#: Classes a rule set may limit, in report order.
RULE_CLASSES: tuple[str, ...] = ("scratch", "defect", "crack")

#: Defect type (:data:`dscope.inspection.types.DEFECT_TYPES`) -> rule class (IEC 61300-3-35 wording).
CLASS_OF_TYPE: dict[str, str] = {
    "scratch": "scratch",
    "crack": "crack",
    "pit": "defect",
    "chip": "defect",
    "contamination": "defect",
}
assert set(CLASS_OF_TYPE) == set(DEFECT_TYPES)

#: Value of ``status`` marking an unverified template (not selectable, hidden from ``rules list``).
PLACEHOLDER_STATUS = "placeholder"

_NAME_RE = r"^[a-z0-9][a-z0-9._-]*$"
_ZONE_RE = r"^[a-z][a-z0-9_-]*$"


# ----------------------------------------------------------------------------------------------
# model
# ----------------------------------------------------------------------------------------------
class Bin(StrictModel):
    """One size bin of one class in one zone.

    ``min: null`` is 0 (then ``min_inclusive`` must be true); ``max: null`` is
    unbounded (then ``max_inclusive`` must be false).  ``max_count``: ``null`` =
    no limit, ``0`` = none allowed, ``n`` = at most ``n`` features in this bin.
    """

    min: float | None = Field(description="lower edge (um or px); null = 0", ge=0)
    min_inclusive: bool = Field(description="whether a size equal to min belongs to this bin")
    max: float | None = Field(description="upper edge (um or px); null = no upper bound", gt=0)
    max_inclusive: bool = Field(description="whether a size equal to max belongs to this bin")
    max_count: int | None = Field(description="null = no limit, 0 = none allowed, n = at most n", ge=0)

    @model_validator(mode="after")
    def _edges_consistent(self):
        if self.min is None and not self.min_inclusive:
            raise ValueError("min is null (0): min_inclusive must be true")
        if self.max is None and self.max_inclusive:
            raise ValueError("max is null (no upper bound): max_inclusive must be false")
        if self.max is not None and self.lo >= self.max:
            raise ValueError(f"min ({self.lo:g}) must be smaller than max ({self.max:g})")
        return self

    # -- interval arithmetic ------------------------------------------------------------------
    @property
    def lo(self) -> float:
        return 0.0 if self.min is None else float(self.min)

    @property
    def hi(self) -> float:
        return math.inf if self.max is None else float(self.max)

    def contains(self, size: float) -> bool:
        """Whether ``size`` (already rounded to the rule set's precision) falls in this bin."""
        above = size > self.lo or (self.min_inclusive and size == self.lo)
        below = size < self.hi or (self.max_inclusive and size == self.hi)
        return above and below

    def label(self) -> str:
        """Interval notation used in rule ids: ``[2,5]``, ``[0,2)``, ``(5,inf)``."""
        left = "[" if self.min_inclusive else "("
        right = "]" if self.max_inclusive else ")"
        hi = "inf" if self.max is None else fmt_number(self.hi)
        return f"{left}{fmt_number(self.lo)},{hi}{right}"

    def describe(self, unit: str) -> str:
        """Human wording: ``< 2 um``, ``of 2-5 um``, ``> 5 um``, ``of any size``."""
        lo, hi = fmt_number(self.lo), fmt_number(self.hi)
        starts_at_zero = self.lo == 0 and self.min_inclusive
        if starts_at_zero and self.max is None:
            return "of any size"
        if starts_at_zero:
            return f"{'<=' if self.max_inclusive else '<'} {hi} {unit}"
        if self.max is None:
            return f"{'>=' if self.min_inclusive else '>'} {lo} {unit}"
        if self.min_inclusive and self.max_inclusive:
            return f"of {lo}-{hi} {unit}"
        return f"{'>=' if self.min_inclusive else '>'} {lo} and {'<=' if self.max_inclusive else '<'} {hi} {unit}"


class Zone(StrictModel):
    """A zone: the annulus between two diameters, in um (``units: "um"``) or px (``units: "px"``)."""

    name: str = Field(pattern=_ZONE_RE, description="zone name, used in rule ids and reports")
    inner_um: float | None = Field(default=None, ge=0, description="inner diameter in um (units um)")
    outer_um: float | None = Field(default=None, gt=0, description="outer diameter in um (units um)")
    inner_px: float | None = Field(default=None, ge=0, description="inner diameter in px (units px)")
    outer_px: float | None = Field(default=None, gt=0, description="outer diameter in px (units px)")

    def diameters(self, units: str) -> tuple[float | None, float | None]:
        return (self.inner_um, self.outer_um) if units == "um" else (self.inner_px, self.outer_px)


class ZoneLimits(StrictModel):
    """Limits of one zone, per class.  ``crack`` omitted = no crack allowed in this zone."""

    scratch: list[Bin] = Field(min_length=1, description="scratches, sized by width")
    defect: list[Bin] = Field(min_length=1, description="pits, chips, contamination: smallest enclosing circle")
    crack: list[Bin] | None = Field(
        default=None, min_length=1, description="cracks, sized by width; omitted = none allowed"
    )


#: The bins used for a class a zone leaves out (only ``crack`` may be left out): none allowed.
NONE_ALLOWED: tuple[Bin, ...] = (Bin(min=None, min_inclusive=True, max=None, max_inclusive=False, max_count=0),)


class RuleSet(StrictModel):
    """A grading rule set (one standard edition and fiber type, or an in-house variant)."""

    name: str = Field(pattern=_NAME_RE, description="identifier; must equal the file name without .json")
    title: str = Field(min_length=1, description="one-line human title")
    standard: str = Field(min_length=1, description='e.g. "IEC 61300-3-35" or "in-house"')
    edition: str = Field(min_length=1, description='e.g. "2.0 (2015)"')
    fiber_mode: Literal["sm", "mm", "large_core", "custom"] = Field(description="fiber family")
    status: Literal["active", "placeholder"] = Field(
        default="active",
        description="placeholder = unverified template: hidden from `rules list`, refused by load_rule_set",
    )
    description: str = Field(default="", description="free text: scope, source, caveats")
    units: Literal["um", "px"] = Field(description="unit of zone diameters and bin edges")
    zone_assignment: Literal["touched", "centroid"] = Field(
        default="touched",
        description="touched: a feature counts in every zone it touches (conservative); centroid: only its centroid zone",
    )
    size_decimals: int = Field(
        default=2,
        ge=0,
        le=6,
        description="sizes are rounded to this many decimals (the reporting precision) before comparison with bin edges",
    )
    allow_bin_gaps: bool = Field(
        default=False, description="allow bins that do not cover [0, inf); sizes in a gap are not limited"
    )
    zones: list[Zone] = Field(min_length=1, description="zones, inner to outer")
    limits: dict[str, ZoneLimits] = Field(description="zone name -> limits per class")

    @model_validator(mode="after")
    def _semantics(self):
        problems: list[str] = []
        # zones: units, unique names, ordered, non-overlapping
        other = "px" if self.units == "um" else "um"
        seen: set[str] = set()
        prev_outer: float | None = None
        prev_name = ""
        for i, z in enumerate(self.zones):
            key = f"zones[{i}]"
            if z.name in seen:
                problems.append(f"{key}.name: duplicate zone name {z.name!r}")
            seen.add(z.name)
            inner, outer = z.diameters(self.units)
            wrong = z.diameters(other)
            if wrong[0] is not None or wrong[1] is not None:
                problems.append(f"{key}: has inner_{other}/outer_{other} but the rule set's units are {self.units!r}")
            if inner is None or outer is None:
                problems.append(f"{key}: needs inner_{self.units} and outer_{self.units}")
                continue
            if inner >= outer:
                problems.append(f"{key}: inner_{self.units} ({inner:g}) must be smaller than outer_{self.units} ({outer:g})")
            if prev_outer is not None and inner < prev_outer:
                problems.append(
                    f"{key}.inner_{self.units}: zones must be ordered inner to outer and not overlap "
                    f"({z.name!r} starts at {inner:g}, inside {prev_name!r} which ends at {prev_outer:g})"
                )
            prev_outer, prev_name = outer, z.name
        # limits: exactly one entry per zone
        for zname in self.limits:
            if zname not in seen:
                problems.append(f"limits.{zname}: no zone named {zname!r} (zones: {', '.join(z.name for z in self.zones)})")
        for z in self.zones:
            if z.name not in self.limits:
                problems.append(f"limits.{z.name}: missing (every zone needs scratch and defect limits)")
        # bins: ascending, non-overlapping, covering [0, inf)
        for zname, zl in self.limits.items():
            for cls in RULE_CLASSES:
                bins = getattr(zl, cls)
                if bins is None:
                    continue
                key = f"limits.{zname}.{cls}"
                problems.extend(_check_bins(bins, key, self.allow_bin_gaps))
                for i, b in enumerate(bins):
                    for edge_name in ("min", "max"):
                        edge = getattr(b, edge_name)
                        if edge is not None and round(edge, self.size_decimals) != edge:
                            problems.append(
                                f"{key}[{i}].{edge_name}: {edge!r} has more decimals than size_decimals "
                                f"({self.size_decimals}); sizes are rounded to that precision before comparison"
                            )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    # -- queries --------------------------------------------------------------------------------
    @property
    def zone_names(self) -> list[str]:
        return [z.name for z in self.zones]

    @property
    def selectable(self) -> bool:
        return self.status != PLACEHOLDER_STATUS

    def bins(self, zone: str, cls: str) -> tuple[Bin, ...]:
        """The bins of ``cls`` in ``zone``; an omitted ``crack`` list gives :data:`NONE_ALLOWED`."""
        if cls not in RULE_CLASSES:
            raise KeyError(f"unknown rule class {cls!r}; known: {', '.join(RULE_CLASSES)}")
        got = getattr(self.limits[zone], cls)
        return NONE_ALLOWED if got is None else tuple(got)

    def zone_defs(self) -> list[ZoneDef]:
        """Zones as :class:`~dscope.inspection.types.ZoneDef`, inner to outer.

        For a rule set in ``um`` the values are micrometre diameters.  For a
        rule set in ``px`` the ``inner_um``/``outer_um`` fields carry the
        **pixel** diameters as written in the file (convention: such zones are
        realised with ``px_per_um = 1``; see :meth:`zone_px_per_um`).

        Examples
        --------
        >>> rs = load_rule_set("iec61300-3-35-ed2-sm-pc")
        >>> [(z.name, z.inner_um, z.outer_um) for z in rs.zone_defs()][:2]
        [('core', 0.0, 25.0), ('cladding', 25.0, 115.0)]
        """
        out = []
        for z in self.zones:
            inner, outer = z.diameters(self.units)
            out.append(ZoneDef(name=z.name, inner_um=float(inner), outer_um=float(outer)))
        return out

    def zone_px_per_um(self, px_per_um: float) -> float:
        """Scale to realise :meth:`zone_defs` on an image: ``px_per_um`` for um rule sets, 1.0 for px ones."""
        return px_per_um if self.units == "um" else 1.0


def _check_bins(bins: list[Bin], key: str, allow_gaps: bool) -> list[str]:
    problems = []
    first = bins[0]
    if not allow_gaps and not (first.lo == 0 and first.min_inclusive):
        problems.append(f"{key}[0]: bins must start at 0 inclusive (min null or 0 with min_inclusive true); "
                        f"sizes below {first.label()} are not covered (set allow_bin_gaps to allow this)")
    for i in range(1, len(bins)):
        a, b = bins[i - 1], bins[i]
        if b.lo < a.hi or (b.lo == a.hi and a.max_inclusive and b.min_inclusive):
            if b.lo < a.lo:
                problems.append(f"{key}[{i}]: bins must be listed in ascending order ({b.label()} after {a.label()})")
            else:
                problems.append(f"{key}[{i}]: {b.label()} overlaps the previous bin {a.label()}")
        elif not allow_gaps and (b.lo > a.hi or (not a.max_inclusive and not b.min_inclusive)):
            problems.append(f"{key}[{i}]: gap between {a.label()} and {b.label()} (set allow_bin_gaps to allow this)")
    if not allow_gaps and bins[-1].max is not None:
        problems.append(f"{key}[{len(bins) - 1}]: the last bin must be unbounded (max null); sizes above "
                        f"{fmt_number(bins[-1].hi)} are not covered (set allow_bin_gaps to allow this)")
    return problems


def fmt_number(x: float) -> str:
    """Short number for messages and rule ids: ``3``, ``4.2``, ``62.5``, ``inf``."""
    if math.isinf(x):
        return "inf"
    return f"{x:.6f}".rstrip("0").rstrip(".") or "0"


# ----------------------------------------------------------------------------------------------
# files
# ----------------------------------------------------------------------------------------------
def rules_dir() -> Path:
    """Folder of the rule sets: ``dscope.config.config_dir() / "rules"``."""
    return config_dir() / "rules"


@dataclass(frozen=True)
class RuleSetEntry:
    """A rule-set file found on disk (what ``rules list`` shows)."""

    name: str
    path: Path
    status: str  # "active" | "placeholder" | "unreadable"
    title: str


def _index(directory: Path) -> dict[str, Path]:
    """name -> file for ``*.json`` in ``directory`` and its direct sub-folders (templates)."""
    found: dict[str, Path] = {}
    if not directory.is_dir():
        return found
    for p in sorted(directory.glob("*.json")) + sorted(directory.glob("*/*.json")):
        found.setdefault(p.stem, p)
    return found


def scan_rule_sets(directory: Path | None = None) -> list[RuleSetEntry]:
    """Every rule-set file with its status (read cheaply, not validated), sorted by name."""
    d = Path(directory) if directory is not None else rules_dir()
    out = []
    for name, path in sorted(_index(d).items()):
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            status = str(raw.get("status", "active")) if isinstance(raw, dict) else "unreadable"
            title = str(raw.get("title", "")) if isinstance(raw, dict) else ""
        except (OSError, ValueError):
            status, title = "unreadable", ""
        out.append(RuleSetEntry(name=name, path=path, status=status, title=title))
    return out


def list_rule_sets(directory: Path | None = None, *, include_placeholders: bool = False) -> list[str]:
    """Names of the selectable rule sets (placeholder templates only with ``include_placeholders``).

    Examples
    --------
    >>> "iec61300-3-35-ed2-sm-pc" in list_rule_sets()
    True
    """
    return [e.name for e in scan_rule_sets(directory) if include_placeholders or e.status != PLACEHOLDER_STATUS]


def _format_errors(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        parts = []
        for p in err["loc"]:
            if isinstance(p, int) and parts:
                parts[-1] = f"{parts[-1]}[{p}]"
            else:
                parts.append(str(p))
        key = ".".join(parts)
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "value_error":
            msg = str(err.get("ctx", {}).get("error", err["msg"]))
        else:
            got = err.get("input")
            msg = err["msg"] + ("" if isinstance(got, (dict, list)) else f" (got {got!r})")
        lines.append(f"{source}: {key}: {msg}" if key else f"{source}: {msg}")
    return "; ".join(lines)


def parse_rule_set(data: dict, source: str = "<memory>") -> RuleSet:
    """Validate a rule-set mapping (``"$comment"`` keys are ignored anywhere).

    Raises
    ------
    ConfigError
        ``rule_set_invalid`` with a message naming ``source`` and the dotted key.
    """
    if not isinstance(data, dict):
        raise ConfigError("rule_set_invalid", f"{source}: the top level must be a JSON object", file=source)
    try:
        return RuleSet.model_validate(strip_comments(data))
    except ValidationError as exc:
        raise ConfigError("rule_set_invalid", _format_errors(exc, source), file=source) from None


def read_rule_set_file(path: str | Path) -> RuleSet:
    """Load and validate one file, whatever its status (used by ``rules check``).

    Raises ``ConfigError`` (``rule_set_unknown`` if the file is missing,
    ``rule_set_invalid`` if it is unreadable, not JSON, invalid, or its
    ``name`` differs from the file name).
    """
    p = Path(path)
    data = read_json_file(p, ConfigError, "rule_set_invalid", what="rule-set file", missing_code="rule_set_unknown")
    rs = parse_rule_set(data, str(p))
    if rs.name != p.stem:
        raise ConfigError(
            "rule_set_invalid", f"{p}: name: {rs.name!r} must equal the file name without .json ({p.stem!r})",
            file=str(p),
        )
    return rs


def load_rule_set(name_or_path: str, directory: Path | None = None, *, allow_placeholder: bool = False) -> RuleSet:
    """Load a rule set by name (from ``directory``, default :func:`rules_dir`) or by file path.

    A value ending in ``.json`` or containing a path separator is a path.
    Placeholder templates (``"status": "placeholder"``) are refused unless
    ``allow_placeholder``.

    Raises
    ------
    ConfigError
        ``rule_set_unknown`` (no such name/file; the message lists the known
        names) or ``rule_set_invalid`` (message names the file and the key).

    Examples
    --------
    >>> load_rule_set("iec61300-3-35-ed2-mm").zone_names
    ['core', 'cladding', 'adhesive', 'contact']
    """
    s = str(name_or_path)
    if s.endswith(".json") or "/" in s or "\\" in s:
        rs = read_rule_set_file(s)
    else:
        d = Path(directory) if directory is not None else rules_dir()
        path = _index(d).get(s)
        if path is None:
            known = ", ".join(list_rule_sets(d)) or "none"
            raise ConfigError("rule_set_unknown", f"no rule set named {s!r} in {d} (known: {known})", name=s)
        rs = read_rule_set_file(path)
    if not rs.selectable and not allow_placeholder:
        raise ConfigError(
            "rule_set_invalid",
            f"rule set {rs.name!r} is a placeholder template (status {rs.status!r}), not verified limits; "
            "fill it from the purchased standard and set status to \"active\" before grading with it",
            name=rs.name,
        )
    return rs


# ----------------------------------------------------------------------------------------------
# JSON Schema export
# ----------------------------------------------------------------------------------------------
SCHEMA_ID = "https://dscope.example/schemas/rule_set.schema.json"


def _allow_comments(node):
    if isinstance(node, dict):
        if node.get("type") == "object":
            props = node.setdefault("properties", {})
            props["$comment"] = {"type": "string", "description": "documentation; ignored by the loader"}
        for v in node.values():
            _allow_comments(v)
    elif isinstance(node, list):
        for v in node:
            _allow_comments(v)
    return node


def rule_set_json_schema() -> dict:
    """JSON Schema (draft 2020-12) of a rule-set file, generated from :class:`RuleSet`.

    Structural only: ordering, overlap and coverage of bins and zones are
    checked by the pydantic model (``dscope rules check``).  ``"$comment"``
    keys are allowed in every object.  The shipped copy lives in
    ``dscope/schemas/rule_set.schema.json`` (regenerate: ``dscope rules schema --write``).
    """
    schema = RuleSet.model_json_schema(mode="validation")
    schema = _allow_comments(schema)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


def schema_path() -> Path:
    """Where the exported schema is kept in the package."""
    return Path(__file__).resolve().parent.parent / "schemas" / "rule_set.schema.json"


def schema_text() -> str:
    """The schema as written to :func:`schema_path` (stable formatting, trailing newline)."""
    return json.dumps(rule_set_json_schema(), indent=2, sort_keys=False) + "\n"
