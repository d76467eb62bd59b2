"""Annotated end-face image: zones, fiber outline, defects, labels and a PASS/FAIL stamp.

:func:`render_annotated` draws a result document (schema ``dscope.result``) over
the inspected image and returns a BGR ``uint8`` array; the caller writes it to
``<stem>_annotated.png``.  The function does no file I/O.

Layout of the output
--------------------
* top left: the status stamp (PASS green, FAIL red, UNGRADED amber, ERROR grey)
  with the first violation(s), the UNGRADED reason or the error ``code: message``;
* top right: the legend (one colour per defect class, with counts);
* bottom left: file name, fiber type / rule set, scale and defect count;
* over the fiber: IEC zone boundaries (dashed, labelled ``name diameter um``),
  the cladding and core outlines (solid), every defect's contour (rotated
  rectangle for scratches) in its class colour and a label
  ``"S1: Scratch, 15.2 um"`` (IEC size: width of scratches/cracks, diameter
  otherwise; pixels when there is no micrometre scale).

All text sits on translucent dark panels and every line has a dark outline, so
the output is legible on bright and dark images alike.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence

import cv2
import numpy as np
from pydantic import Field

from dscope.errors import ImageError
from dscope.inspection.types import DEFECT_TYPES
from dscope.params import StrictModel

__all__ = [
    "AnnotationStyle",
    "DEFECT_COLORS_BGR",
    "STATUS_COLORS_BGR",
    "ZONE_COLORS_BGR",
    "render_annotated",
    "defect_label",
    "wrap_reasons",
]

#: Fixed colour of each defect class (BGR).  Shared with :mod:`dscope.reporting.plots`.
DEFECT_COLORS_BGR: dict[str, tuple[int, int, int]] = {
    "scratch": (0, 225, 255),  # yellow
    "pit": (255, 160, 30),  # blue
    "chip": (0, 90, 255),  # red-orange
    "crack": (255, 60, 255),  # magenta
    "contamination": (120, 255, 0),  # spring green
}
#: Colour of a defect whose class is not one of :data:`DEFECT_TYPES`.
UNKNOWN_DEFECT_COLOR_BGR: tuple[int, int, int] = (235, 235, 235)

#: Stamp colour (BGR) and stamp text colour of each status.
STATUS_COLORS_BGR: dict[str, tuple[int, int, int]] = {
    "PASS": (60, 165, 30),
    "FAIL": (40, 40, 215),
    "UNGRADED": (0, 175, 255),
    "ERROR": (128, 128, 128),
}
STATUS_TEXT_BGR: dict[str, tuple[int, int, int]] = {
    "PASS": (255, 255, 255),
    "FAIL": (255, 255, 255),
    "UNGRADED": (0, 0, 0),
    "ERROR": (255, 255, 255),
}

#: Outline colour of each IEC zone boundary (BGR); pale tints that stay apart from the defect colours.
ZONE_COLORS_BGR: dict[str, tuple[int, int, int]] = {
    "core": (255, 255, 180),
    "cladding": (200, 255, 200),
    "adhesive": (180, 220, 255),
    "contact": (255, 200, 230),
}
UNKNOWN_ZONE_COLOR_BGR: tuple[int, int, int] = (210, 210, 210)

FIBER_OUTLINE_BGR: tuple[int, int, int] = (255, 255, 255)
PANEL_BGR: tuple[int, int, int] = (20, 20, 20)
TEXT_BGR: tuple[int, int, int] = (245, 245, 245)
MUTED_TEXT_BGR: tuple[int, int, int] = (150, 150, 150)
SHADOW_BGR: tuple[int, int, int] = (0, 0, 0)

_FONT = cv2.FONT_HERSHEY_DUPLEX
_STAMP_FONT = cv2.FONT_HERSHEY_DUPLEX


class AnnotationStyle(StrictModel):
    """Layout of the annotated image (cosmetic; the sizes that matter come from ``output`` in the config).

    The defaults are what the batch uses; the caller may pass a modified copy.
    """

    font_reference_side_px: int = Field(
        1024,
        ge=128,
        description="output long side at which font_scale applies as is; larger outputs get proportionally "
        "larger text so labels stay readable when the image is viewed fitted to a screen",
    )
    min_font_factor: float = Field(
        0.6, gt=0, le=1, description="smallest text-size factor applied to outputs smaller than the reference side"
    )
    info_max_height_fraction: float = Field(
        0.22, gt=0, le=1, description="the info panel (bottom left) drops its least important lines beyond this "
        "fraction of the image height"
    )
    stamp_font_factor: float = Field(3.2, gt=0, le=20, description="stamp text size relative to label text")
    panel_alpha: float = Field(0.62, ge=0, le=1, description="opacity of the dark panels behind text")
    panel_padding_factor: float = Field(
        0.45, ge=0, le=3, description="padding inside panels, as a fraction of the label text height"
    )
    max_labels: int = Field(
        40, ge=0, description="at most this many defects get a text label (violating, then largest first); "
        "every defect is outlined"
    )
    max_reason_lines: int = Field(4, ge=0, description="lines of violation / error text under the stamp")
    stamp_max_width_fraction: float = Field(
        0.6, gt=0.1, le=1, description="width available to the text under the stamp, fraction of the image width"
    )
    min_marker_radius_px: float = Field(
        7.0, ge=0, description="defects smaller than this on the output also get a circle of this radius"
    )
    zone_dash_px: float = Field(14.0, gt=0, le=200, description="length of one dash of a zone boundary on the output")
    zone_label_start_deg: float = Field(
        -40.0, ge=-360, le=360, description="preferred angle (image frame, y down) of a zone label on its boundary"
    )
    zone_label_step_deg: float = Field(
        -15.0, ge=-90, le=90, description="angle step tried when the preferred label spot is taken"
    )
    zone_label_tries: int = Field(24, ge=1, le=360, description="label spots tried per zone boundary")


def _f(x) -> float | None:
    """``float(x)`` or ``None`` when missing or non-finite."""
    if x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def defect_color_bgr(defect_type: str) -> tuple[int, int, int]:
    """Fixed BGR colour of a defect class."""
    return DEFECT_COLORS_BGR.get(str(defect_type), UNKNOWN_DEFECT_COLOR_BGR)


def defect_label(defect: Mapping, *, decimals: int = 1) -> str:
    """Label of one defect: ``"S1: Scratch, 15.2 um"``.

    The size is the IEC size (width for scratches and cracks, diameter
    otherwise), in micrometres when known, else in pixels.

    Examples
    --------
    >>> defect_label({"id": "S1", "type": "scratch", "iec_size_um": 15.24, "iec_size_px": 30.5})
    'S1: Scratch, 15.2 um'
    >>> defect_label({"id": "P2", "type": "pit", "iec_size_um": None, "iec_size_px": 7.0})
    'P2: Pit, 7.0 px'
    """
    did = str(defect.get("id", "?"))
    dtype = str(defect.get("type", "defect")).replace("_", " ").capitalize()
    linear = defect.get("type") in ("scratch", "crack")
    size_um = _f(defect.get("iec_size_um"))
    if size_um is None:
        size_um = _f(defect.get("width_um" if linear else "diameter_um"))
    if size_um is not None:
        return f"{did}: {dtype}, {size_um:.{decimals}f} um"
    size_px = _f(defect.get("iec_size_px"))
    if size_px is None:
        size_px = _f(defect.get("width_px" if linear else "diameter_px"))
    if size_px is not None:
        return f"{did}: {dtype}, {size_px:.{decimals}f} px"
    return f"{did}: {dtype}"


# ----------------------------------------------------------------------------------------------------------
# image preparation


def _to_bgr8(image: np.ndarray) -> np.ndarray:
    """Any 2-D / 3-channel / 4-channel numeric image to BGR uint8 (min-max stretch for non-uint8)."""
    if not isinstance(image, np.ndarray):
        raise ImageError("unreadable_image", f"render_annotated: expected a numpy image, got {type(image).__name__}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise ImageError(
            "unreadable_image", f"render_annotated: expected a grayscale or BGR image, got shape {image.shape}"
        )
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ImageError("unreadable_image", f"render_annotated: empty image of shape {image.shape}")
    if image.dtype != np.uint8:
        if image.dtype == bool or not np.issubdtype(image.dtype, np.number):
            if image.dtype != bool:
                raise ImageError("unreadable_image", f"render_annotated: unsupported pixel type {image.dtype}")
        a = image.astype(np.float32)
        finite = np.isfinite(a)
        if not finite.any():
            a = np.zeros(a.shape, np.float32)
        else:
            lo, hi = float(a[finite].min()), float(a[finite].max())
            a = np.where(finite, a, lo)
            a = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros(a.shape, np.float32)
        image = np.clip(a + 0.5, 0, 255).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return np.ascontiguousarray(image)


# ----------------------------------------------------------------------------------------------------------
# drawing primitives


class _Canvas:
    """Output image plus the scale factors and sizes used by every primitive."""

    def __init__(self, img: np.ndarray, scale: float, font_scale: float, line_px: int, style: AnnotationStyle):
        self.img = img
        self.s = scale
        self.h, self.w = img.shape[:2]
        self.style = style
        grow = max(style.min_font_factor, max(self.h, self.w) / style.font_reference_side_px)
        self.fs = font_scale * grow
        self.text_th = max(1, int(round(self.fs * 1.6)))
        self.line = max(1, int(line_px))
        (_, th), base = cv2.getTextSize("Ag", _FONT, self.fs, self.text_th)
        self.text_h = th
        self.text_base = base
        self.pad = max(2, int(round(th * style.panel_padding_factor)))
        self.occupied: list[tuple[int, int, int, int]] = []  # x0, y0, x1, y1 of placed text and panels
        self.soft: list[tuple[int, int, int, int]] = []  # defect outlines: avoided when possible

    # -- geometry helpers
    def pt(self, xy) -> tuple[int, int]:
        return int(round(float(xy[0]) * self.s)), int(round(float(xy[1]) * self.s))

    def text_size(self, text: str, fs: float | None = None, th: int | None = None, font=_FONT) -> tuple[int, int]:
        (w, h), _ = cv2.getTextSize(text, font, fs or self.fs, th or self.text_th)
        return w, h

    def fits(self, x: int, y: int, bw: int, bh: int) -> bool:
        return x >= 0 and y >= 0 and x + bw <= self.w and y + bh <= self.h

    def free(self, x: int, y: int, bw: int, bh: int, hard_only: bool = False) -> bool:
        """True when the box overlaps no text/panel (and, unless ``hard_only``, no reserved defect box)."""
        boxes = self.occupied if hard_only else self.occupied + self.soft
        return all(x + bw <= o[0] or o[2] <= x or y + bh <= o[1] or o[3] <= y for o in boxes)

    # -- panels and text
    def panel(self, x0: int, y0: int, x1: int, y1: int, color=PANEL_BGR, alpha: float | None = None) -> None:
        x0, y0 = max(0, int(x0)), max(0, int(y0))
        x1, y1 = min(self.w, int(x1)), min(self.h, int(y1))
        if x1 <= x0 or y1 <= y0:
            return
        a = self.style.panel_alpha if alpha is None else alpha
        roi = self.img[y0:y1, x0:x1]
        blended = roi.astype(np.float32) * (1.0 - a) + np.asarray(color, np.float32) * a
        roi[:] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)

    def text(self, text: str, x: int, y: int, color=TEXT_BGR, fs=None, th=None, font=_FONT) -> None:
        """Text with its baseline at ``y`` (callers put it on a dark panel for contrast)."""
        cv2.putText(self.img, text, (int(x), int(y)), font, fs or self.fs, color, th or self.text_th, cv2.LINE_AA)

    def text_block(self, lines: Sequence[str], x0: int, y0: int, color=TEXT_BGR, align_right=False, draw=True):
        """Lines on one translucent panel whose top-left (or top-right) corner is at (x0, y0); returns the box.

        With ``draw=False`` only the box is reserved (so later labels avoid it).
        """
        if not lines:
            return (x0, y0, x0, y0)
        sizes = [self.text_size(t) for t in lines]
        lh = self.text_h + self.text_base + self.pad
        bw = max(w for w, _ in sizes) + 2 * self.pad
        bh = lh * len(lines) + self.pad
        if align_right:
            x0 = x0 - bw
        box = (x0, y0, x0 + bw, y0 + bh)
        self.occupied.append(box)
        if draw:
            self.panel(*box)
            for i, t in enumerate(lines):
                self.text(t, x0 + self.pad, y0 + self.pad + self.text_h + i * lh, color)
        return box

    # -- outlines
    def polyline(self, pts: np.ndarray, color, closed=True, thickness=None) -> None:
        th = thickness or self.line
        p = [np.round(np.asarray(pts, np.float64) * self.s).astype(np.int32).reshape(-1, 1, 2)]
        cv2.polylines(self.img, p, closed, SHADOW_BGR, th + 2, cv2.LINE_AA)
        cv2.polylines(self.img, p, closed, color, th, cv2.LINE_AA)

    def ellipse(self, center, a_px, b_px, angle_deg, color, thickness=None, dash_deg: float | None = None) -> None:
        """Ellipse given in input-image pixels (semi-axes ``a_px``, ``b_px``); dashed when ``dash_deg``."""
        th = thickness or self.line
        c = (float(center[0]) * self.s, float(center[1]) * self.s)
        a, b = a_px * self.s, b_px * self.s
        if a < 1 or b < 1:
            return
        # polygon with a step bounded by the dash length: at most 360 / step vertices
        step = int(max(1, min(dash_deg or 2.0, 2.0)))
        poly = cv2.ellipse2Poly(
            (int(round(c[0] * 16)), int(round(c[1] * 16))),
            (int(round(a * 16)), int(round(b * 16))),
            int(round(angle_deg)),
            0,
            360,
            step,
        ).astype(np.float64) / 16.0
        if dash_deg is None:
            pts = [np.round(poly).astype(np.int32).reshape(-1, 1, 2)]
        else:
            per = max(1, int(round(dash_deg / step)))
            n = len(poly) - 1
            starts = np.arange(0, n, 2 * per)
            pts = [np.round(poly[s : min(s + per, n) + 1]).astype(np.int32).reshape(-1, 1, 2) for s in starts]
        cv2.polylines(self.img, pts, dash_deg is None, SHADOW_BGR, th + 2, cv2.LINE_AA)
        cv2.polylines(self.img, pts, dash_deg is None, color, th, cv2.LINE_AA)

    def place_label(self, text: str, anchor_box: tuple[int, int, int, int], color) -> tuple | None:
        """Label near ``anchor_box`` (output pixels) avoiding earlier text; returns the label box or None."""
        tw, _ = self.text_size(text)
        bw = tw + 2 * self.pad
        bh = self.text_h + self.text_base + 2 * self.pad
        ax0, ay0, ax1, ay1 = anchor_box
        gap0 = self.pad + self.line
        candidates = []
        for gap in (gap0, gap0 + 2 * bh):  # next to the defect, then a little further out
            candidates += [
                (ax1 + gap, ay0 - bh - gap),  # above right
                (ax1 + gap, ay1 + gap),  # below right
                (ax0 - bw - gap, ay0 - bh - gap),  # above left
                (ax0 - bw - gap, ay1 + gap),  # below left
                (ax1 + gap, (ay0 + ay1) // 2 - bh // 2),  # right
                (ax0 - bw - gap, (ay0 + ay1) // 2 - bh // 2),  # left
                ((ax0 + ax1) // 2 - bw // 2, ay0 - bh - gap),  # above
                ((ax0 + ax1) // 2 - bw // 2, ay1 + gap),  # below
            ]
        gap = gap0
        choice = next(
            (
                (x, y)
                for hard_only in (False, True)  # first avoid everything, then only text and panels
                for x, y in candidates
                if self.fits(x, y, bw, bh) and self.free(x, y, bw, bh, hard_only=hard_only)
            ),
            None,
        )
        if choice is None:
            # every spot is taken or outside: clamp the first candidate into the frame (may overlap)
            x, y = candidates[0]
            choice = (min(max(0, x), max(0, self.w - bw)), min(max(0, y), max(0, self.h - bh)))
        x, y = choice
        box = (x, y, x + bw, y + bh)
        # leader line from the anchor box to the label, in the defect colour
        lx = min(max((ax0 + ax1) // 2, x), x + bw)
        ly = min(max((ay0 + ay1) // 2, y), y + bh)
        tx = min(max(lx, ax0), ax1)
        ty = min(max(ly, ay0), ay1)
        if math.hypot(lx - tx, ly - ty) > gap:
            cv2.line(self.img, (tx, ty), (lx, ly), SHADOW_BGR, 3, cv2.LINE_AA)
            cv2.line(self.img, (tx, ty), (lx, ly), color, 1, cv2.LINE_AA)
        self.panel(*box)
        cv2.rectangle(self.img, (box[0], box[1]), (box[2] - 1, box[3] - 1), color, 1, cv2.LINE_AA)
        self.text(text, x + self.pad, y + self.pad + self.text_h, color)
        self.occupied.append(box)
        return box


# ----------------------------------------------------------------------------------------------------------
# document parts


def _fiber_frame(fiber: Mapping) -> tuple[tuple[float, float], float, float] | None:
    """(center, axis_ratio, angle_deg) of the fiber in input pixels, or None when unusable."""
    c = fiber.get("center_px")
    if not c or len(c) != 2 or _f(c[0]) is None or _f(c[1]) is None:
        return None
    e = fiber.get("cladding_ellipse_px")
    if isinstance(e, Mapping):
        a, b = _f(e.get("semi_major_px")), _f(e.get("semi_minor_px"))
        ang = _f(e.get("angle_deg")) or 0.0
        ec = e.get("center_px") or c
        if a and b and a > 0 and b > 0:
            return (float(ec[0]), float(ec[1])), max(a, b) / min(a, b), ang
    return (float(c[0]), float(c[1])), 1.0, 0.0


def _fmt_um(v: float) -> str:
    return f"{v:.0f}" if abs(v - round(v)) < 0.05 else f"{v:.1f}"


def _zone_list(doc: Mapping) -> list[tuple[str, float, float | None]]:
    """(name, outer radius px, outer diameter um) of every drawable zone."""
    out = []
    for z in doc.get("zones") or []:
        if not isinstance(z, Mapping):
            continue
        r = _f(z.get("outer_px"))
        if r is not None and r > 0:
            out.append((str(z.get("name", "zone")), r, _f(z.get("outer_um"))))
    return out


def _draw_zones(cv: _Canvas, doc: Mapping, frame) -> None:
    (cx, cy), ratio, ang = frame
    for name, r, _ in _zone_list(doc):
        color = ZONE_COLORS_BGR.get(name, UNKNOWN_ZONE_COLOR_BGR)
        dash_deg = min(90.0, math.degrees(cv.style.zone_dash_px / max(r * cv.s, 1e-6)))
        cv.ellipse((cx, cy), r, r / ratio, ang, color, thickness=max(1, cv.line - 1), dash_deg=dash_deg)


def _draw_zone_labels(cv: _Canvas, doc: Mapping, frame) -> None:
    """Label each zone boundary ``"name D um"`` at the first free spot next to it."""
    (cx, cy), ratio, ang = frame
    st = cv.style
    t = math.radians(ang)
    for name, r, d_um in _zone_list(doc):
        color = ZONE_COLORS_BGR.get(name, UNKNOWN_ZONE_COLOR_BGR)
        label = f"{name} {_fmt_um(d_um)} um" if d_um is not None else f"{name} {2 * r:.0f} px"
        tw, _ = cv.text_size(label)
        bw = tw + 2 * cv.pad
        bh = cv.text_h + cv.text_base + 2 * cv.pad
        spot = None
        for hard_only, outside in ((False, True), (False, False)):
            for k in range(st.zone_label_tries):
                phi = math.radians(st.zone_label_start_deg + k * st.zone_label_step_deg)
                ex, ey = r * math.cos(phi), r / ratio * math.sin(phi)
                px = (cx + ex * math.cos(t) - ey * math.sin(t)) * cv.s
                py = (cy + ex * math.sin(t) + ey * math.cos(t)) * cv.s
                right = (math.cos(phi) >= 0) == outside
                down = (math.sin(phi) > 0) == outside
                x = int(px + cv.pad) if right else int(px - cv.pad - bw)
                y = int(py + cv.pad) if down else int(py - cv.pad - bh)
                if cv.fits(x, y, bw, bh) and cv.free(x, y, bw, bh, hard_only=hard_only):
                    spot = (x, y)
                    break
            if spot is not None:
                break
        if spot is None:
            continue  # no free spot: leave it unlabelled rather than cover a defect (the info panel lists zones)
        x, y = spot
        cv.panel(x, y, x + bw, y + bh)
        cv.text(label, x + cv.pad, y + cv.pad + cv.text_h, color)
        cv.occupied.append((x, y, x + bw, y + bh))


def _draw_fiber(cv: _Canvas, fiber: Mapping, frame) -> None:
    (cx, cy), ratio, ang = frame
    r = _f(fiber.get("cladding_radius_px"))
    if r and r > 0:
        cv.ellipse((cx, cy), r, r / ratio, ang, FIBER_OUTLINE_BGR, thickness=cv.line)
    rc = _f(fiber.get("core_radius_px"))
    if rc and rc > 0:
        cv.ellipse((cx, cy), rc, rc / ratio, ang, FIBER_OUTLINE_BGR, thickness=max(1, cv.line - 1))
    # centre cross
    arm = max(3, cv.text_h // 2)
    p = cv.pt((cx, cy))
    for d in ((arm, 0), (0, arm)):
        a, b = (p[0] - d[0], p[1] - d[1]), (p[0] + d[0], p[1] + d[1])
        cv2.line(cv.img, a, b, SHADOW_BGR, 3, cv2.LINE_AA)
        cv2.line(cv.img, a, b, FIBER_OUTLINE_BGR, 1, cv2.LINE_AA)


def _defect_shape(d: Mapping) -> tuple[np.ndarray | None, bool]:
    """Outline to draw (input pixels, (N, 2) float) and whether it is a closed polygon."""
    contour = d.get("contour_px")
    pts = None
    if contour is not None:
        try:
            pts = np.asarray(contour, dtype=np.float64).reshape(-1, 2)
        except (TypeError, ValueError):
            pts = None
        if pts is not None and (len(pts) == 0 or not np.isfinite(pts).all()):
            pts = None
    if pts is not None and len(pts) >= 3:
        if d.get("type") == "scratch":  # a scratch is shown by its rotated (min-area) rectangle
            rect = cv2.minAreaRect(pts.astype(np.float32))
            return cv2.boxPoints(rect).astype(np.float64), True
        return pts, True
    if pts is not None and len(pts) >= 1:
        return pts, len(pts) > 2
    bbox = d.get("bbox_px")
    if bbox is not None and len(bbox) == 4 and all(_f(v) is not None for v in bbox):
        x, y, w, h = (float(v) for v in bbox)
        return np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], np.float64), True
    return None, False


def _draw_defects(cv: _Canvas, doc: Mapping) -> None:
    defects = [d for d in (doc.get("defects") or []) if isinstance(d, Mapping)]
    if not defects:
        return
    violating = {str(i) for v in (doc.get("violations") or []) if isinstance(v, Mapping) for i in v.get("defect_ids") or []}
    boxes: list[tuple[int, int, int, int] | None] = []
    for d in defects:
        color = defect_color_bgr(d.get("type", ""))
        pts, closed = _defect_shape(d)
        cen = d.get("centroid_px")
        cen_ok = cen is not None and len(cen) == 2 and _f(cen[0]) is not None and _f(cen[1]) is not None
        if pts is None and not cen_ok:
            boxes.append(None)
            continue
        if pts is not None:
            cv.polyline(pts, color, closed=closed)
            q = pts * cv.s
            x0, y0 = np.floor(q.min(axis=0)).astype(int)
            x1, y1 = np.ceil(q.max(axis=0)).astype(int)
        else:
            x0 = x1 = int(round(float(cen[0]) * cv.s))
            y0 = y1 = int(round(float(cen[1]) * cv.s))
        extent = max(x1 - x0, y1 - y0) / 2.0
        if extent < cv.style.min_marker_radius_px:
            # small defects also get a ring so they are visible in the downscaled image
            mx, my = (x0 + x1) / 2.0, (y0 + y1) / 2.0
            rr = int(round(cv.style.min_marker_radius_px + cv.line))
            ctr = (int(round(mx)), int(round(my)))
            cv2.circle(cv.img, ctr, rr, SHADOW_BGR, cv.line + 2, cv2.LINE_AA)
            cv2.circle(cv.img, ctr, rr, color, cv.line, cv2.LINE_AA)
            x0, y0, x1, y1 = ctr[0] - rr, ctr[1] - rr, ctr[0] + rr, ctr[1] + rr
        boxes.append((int(x0), int(y0), int(x1), int(y1)))
    # reserve the outlines of defects so no label covers one
    cv.soft.extend(b for b in boxes if b is not None)

    def priority(i):
        d = defects[i]
        size = _f(d.get("iec_size_px")) or _f(d.get("diameter_px")) or 0.0
        return (0 if str(d.get("id")) in violating else 1, -size, i)

    order = sorted((i for i in range(len(defects)) if boxes[i] is not None), key=priority)
    for i in order[: cv.style.max_labels]:
        d = defects[i]
        cv.place_label(defect_label(d), boxes[i], defect_color_bgr(d.get("type", "")))


def _reason_lines(doc: Mapping, status: str) -> list[str]:
    err = doc.get("error")
    lines: list[str] = []
    if isinstance(err, Mapping) and (err.get("code") or err.get("message")):
        lines.append(f"{err.get('code', 'error')}: {err.get('message', '')}".strip())
    if status == "FAIL" or doc.get("violations"):
        lines += [str(v.get("message", v.get("rule", ""))) for v in doc.get("violations") or [] if isinstance(v, Mapping)]
    if status == "UNGRADED" and doc.get("grade_reason"):
        lines.append(str(doc["grade_reason"]))
    return [s for s in lines if s]


def wrap_reasons(reasons: Sequence[str], width_chars: int, max_lines: int) -> list[str]:
    """Wrap reason texts to ``width_chars`` and keep at most ``max_lines`` lines.

    Whole reasons are kept in order; when some do not fit, the last line says
    how many were left out.

    Examples
    --------
    >>> wrap_reasons(["scratch in core", "pit too large in cladding", "chip on the edge"], 40, 2)
    ['scratch in core', '... 2 more reason(s) in the report']
    """
    if max_lines <= 0:
        return []
    lines: list[str] = []
    shown = 0
    for i, r in enumerate(reasons):
        wrapped = textwrap.wrap(r, max(8, width_chars), subsequent_indent="  ") or [r]
        room = max_lines - (0 if i == len(reasons) - 1 else 1)  # keep a line for "... more"
        if len(lines) + len(wrapped) > room:
            break
        lines.extend(wrapped)
        shown += 1
    if shown < len(reasons):
        more = f"... {len(reasons) - shown} more reason(s) in the report"
        lines = lines[: max_lines - 1] + [more]
    return lines


def _draw_stamp(cv: _Canvas, doc: Mapping, status: str, draw: bool = True) -> None:
    st = cv.style
    color = STATUS_COLORS_BGR.get(status, STATUS_COLORS_BGR["ERROR"])
    tcolor = STATUS_TEXT_BGR.get(status, TEXT_BGR)
    fs = cv.fs * st.stamp_font_factor
    th = max(2, int(round(fs * 1.8)))
    (tw, tht), base = cv2.getTextSize(status, _STAMP_FONT, fs, th)
    margin = cv.pad * 2
    pad = max(cv.pad, tht // 3)
    x0, y0 = margin, margin
    x1, y1 = x0 + tw + 2 * pad, y0 + tht + base + 2 * pad
    if draw:
        # solid stamp with a contrasting frame
        cv2.rectangle(cv.img, (x0 - 2, y0 - 2), (x1 + 1, y1 + 1), SHADOW_BGR, -1)
        cv2.rectangle(cv.img, (x0, y0), (x1 - 1, y1 - 1), color, -1)
        inset = pad // 3
        cv2.rectangle(cv.img, (x0 + inset, y0 + inset), (x1 - 1 - inset, y1 - 1 - inset), tcolor, max(1, th // 3))
        cv2.putText(cv.img, status, (x0 + pad, y0 + pad + tht), _STAMP_FONT, fs, tcolor, th, cv2.LINE_AA)
    cv.occupied.append((x0 - 2, y0 - 2, x1 + 2, y1 + 2))
    # reason text under the stamp, wrapped to the available width
    reasons = _reason_lines(doc, status)
    if not reasons or st.max_reason_lines == 0:
        return
    avail = max(x1 - x0, int(cv.w * st.stamp_max_width_fraction)) - 2 * cv.pad
    char_w = max(1, cv.text_size("abcdefghijklmnopqrstuvwxyz")[0] / 26.0)
    width_chars = max(12, int(avail / char_w))
    cv.text_block(wrap_reasons(reasons, width_chars, st.max_reason_lines), x0, y1 + cv.pad, draw=draw)


def _draw_legend(cv: _Canvas, doc: Mapping, draw: bool = True) -> None:
    defects = [d for d in (doc.get("defects") or []) if isinstance(d, Mapping)]
    if not defects and doc.get("fiber") is None:
        return  # nothing was inspected (ERROR): no legend
    present: dict[str, int] = {}
    for d in defects:
        t = str(d.get("type", ""))
        present[t] = present.get(t, 0) + 1
    # classes present, in the canonical order, then unknown ones
    counts = {t: present[t] for t in DEFECT_TYPES if t in present}
    counts.update({t: n for t, n in present.items() if t not in counts})
    if not counts:
        cv.text_block(["no defects"], cv.w - cv.pad * 2, cv.pad * 2, align_right=True, draw=draw)
        return
    lines = [f"{t} ({n})" for t, n in counts.items()]
    sw = cv.text_h  # swatch size
    sizes = [cv.text_size(t)[0] for t in lines]
    lh = cv.text_h + cv.text_base + cv.pad
    bw = max(sizes) + sw + 3 * cv.pad
    bh = lh * len(lines) + cv.pad
    x1, y0 = cv.w - cv.pad * 2, cv.pad * 2
    x0 = x1 - bw
    cv.occupied.append((x0, y0, x1, y0 + bh))
    if not draw:
        return
    cv.panel(x0, y0, x1, y0 + bh)
    for i, (t, label) in enumerate(zip(counts, lines)):
        ty = y0 + cv.pad + cv.text_h + i * lh
        c = defect_color_bgr(t)
        cv2.rectangle(cv.img, (x0 + cv.pad, ty - sw), (x0 + cv.pad + sw, ty), c, -1)
        cv2.rectangle(cv.img, (x0 + cv.pad, ty - sw), (x0 + cv.pad + sw, ty), SHADOW_BGR, 1)
        cv.text(label, x0 + 2 * cv.pad + sw, ty, TEXT_BGR)


def _draw_info(cv: _Canvas, doc: Mapping, draw: bool = True) -> None:
    """File name, fiber type / rule set, scale, zone diameters, defect count (bottom left).

    Lines are kept by importance until the panel would exceed
    ``style.info_max_height_fraction`` of the image height.
    """
    image = doc.get("image") or {}
    fiber = doc.get("fiber") if isinstance(doc.get("fiber"), Mapping) else None
    name = image.get("filename") or image.get("path") or ""
    ranked: list[tuple[int, str]] = []  # (importance rank, line); lines are shown in list order
    if name:
        ranked.append((0, str(name)))
    ft, rs = doc.get("fiber_type"), doc.get("rule_set")
    if ft or rs:
        ranked.append((3, " | ".join(str(v) for v in (ft, rs) if v)))
    ump = _f(fiber.get("um_per_px")) if fiber else None
    if ump is not None:
        src = fiber.get("scale_source") or ""
        ranked.append((2, f"scale {ump:.4g} um/px" + (f" ({src})" if src else "")))
    elif fiber:
        ranked.append((2, "scale unknown: sizes in px"))
    zl = _zone_list(doc)
    if zl:
        parts = [f"{n} {_fmt_um(d)}" if d is not None else f"{n} {2 * r:.0f}px" for n, r, d in zl]
        unit = " um" if all(d is not None for _, _, d in zl) else ""
        ranked.append((4, "zones (diameter): " + ", ".join(parts) + unit))
    n = len(doc.get("defects") or [])
    if doc.get("status") != "ERROR" or n:
        ranked.append((1, f"{n} defect" + ("" if n == 1 else "s")))
    if not ranked:
        return
    lh = cv.text_h + cv.text_base + cv.pad
    max_lines = max(1, int((cv.h * cv.style.info_max_height_fraction - cv.pad) // lh))
    keep = sorted(r for r, _ in ranked)[:max_lines]
    lines = [t for r, t in ranked if r in keep]
    bh = lh * len(lines) + cv.pad
    cv.text_block(lines, cv.pad * 2, cv.h - cv.pad * 2 - bh, draw=draw)


# ----------------------------------------------------------------------------------------------------------


def render_annotated(
    gray: np.ndarray,
    doc: Mapping,
    *,
    max_side_px: int,
    font_scale: float,
    line_px: int,
    style: AnnotationStyle | None = None,
) -> np.ndarray:
    """Draw a result document over its image.

    Parameters
    ----------
    gray : numpy.ndarray
        The inspected image, ``(H, W)`` grayscale (or ``(H, W, 3)`` BGR), any
        numeric dtype (non-``uint8`` images are min-max stretched for display).
        Coordinates in ``doc`` refer to this image.
    doc : Mapping
        Result document (schema ``dscope.result``).  ERROR documents without a
        fiber render the image with the grey stamp and the error message.
    max_side_px : int
        The output is downscaled (never upscaled) so its longer side is at most this.
    font_scale : float
        OpenCV font scale of labels on an output whose long side is
        ``style.font_reference_side_px``; larger outputs get proportionally larger text.
    line_px : int
        Thickness of outlines on the output, pixels.
    style : AnnotationStyle, optional
        Layout details; the defaults when omitted.

    Returns
    -------
    numpy.ndarray
        BGR ``uint8`` image with the input's aspect ratio.

    Raises
    ------
    dscope.errors.ImageError
        ``unreadable_image`` when ``gray`` is not a usable image array.
    ValueError
        When ``max_side_px``, ``font_scale`` or ``line_px`` is not positive.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.full((300, 400), 128, np.uint8)
    >>> doc = {"status": "PASS", "fiber": {"center_px": [200, 150], "cladding_radius_px": 100.0},
    ...        "zones": [], "defects": [], "violations": []}
    >>> render_annotated(img, doc, max_side_px=200, font_scale=0.5, line_px=1).shape
    (150, 200, 3)
    """
    if not isinstance(doc, Mapping):
        raise TypeError(f"render_annotated: doc must be a mapping, got {type(doc).__name__}")
    if int(max_side_px) < 1 or not (float(font_scale) > 0) or int(line_px) < 1:
        raise ValueError(
            f"render_annotated: max_side_px, font_scale and line_px must be positive "
            f"(got {max_side_px}, {font_scale}, {line_px})"
        )
    style = style or AnnotationStyle()
    img = _to_bgr8(gray)
    h, w = img.shape[:2]
    scale = min(1.0, float(max_side_px) / max(h, w))
    if scale < 1.0:
        size = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
        img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
        # exact factor per axis differs by rounding only; use the mean for drawing
        scale = 0.5 * (size[0] / w + size[1] / h)
    else:
        img = img.copy()
    cv = _Canvas(img, scale, float(font_scale), int(line_px), style)
    status = str(doc.get("status") or "ERROR").upper()

    # the panels reserve their boxes first so defect labels avoid them; they are drawn last, on top
    _draw_stamp(cv, doc, status, draw=False)
    _draw_legend(cv, doc, draw=False)
    _draw_info(cv, doc, draw=False)
    fiber = doc.get("fiber")
    frame = _fiber_frame(fiber) if isinstance(fiber, Mapping) else None
    if frame is not None:
        _draw_zones(cv, doc, frame)
        _draw_fiber(cv, fiber, frame)
    _draw_defects(cv, doc)
    if frame is not None:
        _draw_zone_labels(cv, doc, frame)
    _draw_legend(cv, doc)
    _draw_info(cv, doc)
    _draw_stamp(cv, doc, status)
    return cv.img
