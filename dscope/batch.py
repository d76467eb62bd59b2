"""Batch inspection of image files into an output folder.

Images are inspected in worker processes (one per core by default); each
worker writes its image's outputs (``<stem>.json``, ``<stem>_annotated.png``,
``<stem>_report.csv``) so rendering runs in parallel too.  The parent collects
the documents in input order and writes the batch outputs
(``summary_report.csv``, ``batch_summary.png``, ``defect_polar_map.png``).
A worker that crashes costs only the image it was working on.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2

from dscope.errors import DScopeError
from dscope.reporting.document import dumps, error_document
from dscope.runner import RunSettings, inspect_file_with_image

SUMMARY_CSV = "summary_report.csv"
BATCH_PLOT = "batch_summary.png"
POLAR_PLOT = "defect_polar_map.png"


@dataclass
class BatchResult:
    docs: list[dict]
    out_dir: Path
    wall_s: float
    outputs: dict[str, str] = field(default_factory=dict)

    @property
    def status_counts(self) -> dict[str, int]:
        return status_counts(self.docs)


def status_counts(docs: list[dict]) -> dict[str, int]:
    """Images per verdict, every verdict listed (0 when absent)."""
    counts = {"PASS": 0, "FAIL": 0, "UNGRADED": 0, "ERROR": 0}
    for d in docs:
        counts[d["status"]] = counts.get(d["status"], 0) + 1
    return counts


def collect_images(paths: list[str | os.PathLike], extensions: list[str], recursive: bool = False) -> list[Path]:
    """Expand files and folders into a sorted, de-duplicated list of image paths.

    Folders contribute their files with an image extension (hidden files
    skipped); files named explicitly are kept whatever their extension, so
    that a wrong file gets an ERROR result instead of vanishing silently.
    Raises :class:`DScopeError` (``file_not_found``) for a path that does not exist.
    """
    exts = {e.lower() for e in extensions}
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            it = p.rglob("*") if recursive else p.iterdir()
            found = sorted(
                f for f in it if f.is_file() and f.suffix.lower() in exts and not f.name.startswith(".")
            )
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise DScopeError("file_not_found", f"{p}: no such file or folder")
    seen: set[Path] = set()
    unique = []
    for p in out:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


def output_stems(images: list[Path]) -> list[str]:
    """A unique output stem per image (``a``, ``a_2`` ... when stems collide)."""
    used: set[str] = set()
    stems = []
    for p in images:
        stem, n = p.stem, 1
        while stem in used:
            n += 1
            stem = f"{p.stem}_{n}"
        used.add(stem)
        stems.append(stem)
    return stems


def write_image_outputs(doc: dict, gray, out_dir: Path, stem: str, settings: RunSettings) -> dict[str, str]:
    """Write the per-image outputs selected in ``config.output``; returns {kind: path}."""
    from dscope.reporting.annotate import render_annotated
    from dscope.reporting.tables import write_defect_csv

    out = settings.config.output
    written: dict[str, str] = {}
    if out.write_json:
        p = out_dir / f"{stem}.json"
        p.write_text(dumps(doc), encoding="utf-8")
        written["json"] = str(p)
    if out.write_annotated and gray is not None:
        img = render_annotated(
            gray, doc, max_side_px=out.annotated_max_side_px, font_scale=out.annotated_font_scale,
            line_px=out.annotated_line_px,
        )
        p = out_dir / f"{stem}_annotated.png"
        cv2.imwrite(str(p), img)
        written["annotated"] = str(p)
    if out.write_defect_csv:
        p = out_dir / f"{stem}_report.csv"
        write_defect_csv(doc, p)
        written["defect_csv"] = str(p)
    if out.save_zone_crops and gray is not None and doc.get("fiber"):
        from dscope.reporting.zone_crops import write_zone_crops

        written.update(write_zone_crops(gray, doc, settings, out_dir, stem))
    return written


def _work(path: str, stem: str, out_dir: str, settings: RunSettings) -> dict:
    """One image in a worker process: inspect it and write its reports."""
    doc, gray = inspect_file_with_image(path, settings)
    try:
        doc["outputs"] = write_image_outputs(doc, gray, Path(out_dir), stem, settings)
    except Exception as exc:  # keep the verdict even if a report could not be written
        doc.setdefault("warnings", []).append(f"could not write reports: {type(exc).__name__}: {exc}")
    return doc


def _failed_doc(path: Path, stem: str, out: Path, settings: RunSettings, err: DScopeError) -> dict:
    """Result of an image whose worker timed out or died: ERROR with the code, and its JSON written."""
    doc = error_document(err, settings, {"path": str(path), "filename": path.name}, {})
    if settings.config.output.write_json:
        (out / f"{stem}.json").write_text(dumps(doc), encoding="utf-8")
    return doc


def run_batch(
    images: list[Path],
    out_dir: str | os.PathLike,
    settings: RunSettings,
    *,
    workers: int | None = None,
    progress: bool = True,
    log=None,
) -> BatchResult:
    """Inspect ``images`` into ``out_dir``; returns the documents in input order.

    Each image runs in a worker process (spawned, never forked) with the
    per-image limit ``batch.image_timeout_s``: a hung image is killed and
    reported as ERROR ``timeout``, a crashing one as ``worker_crashed``, and
    the batch goes on.
    """
    from multiprocessing.connection import wait

    from tqdm import tqdm

    from dscope.daemon.workers import WorkerPool

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bcfg = settings.config.batch
    n_workers = workers if workers else (bcfg.default_workers or os.cpu_count() or 1)
    n_workers = max(1, min(n_workers, len(images) or 1))
    stems = output_stems(images)
    t0 = time.perf_counter()
    docs: list[dict | None] = [None] * len(images)
    bar = tqdm(total=len(images), unit="img", disable=not progress, desc="inspecting", leave=True)

    def on_event(name, **kw):
        if log is not None and name in ("worker_died", "worker_killed", "worker_error", "worker_start_timeout"):
            log.warning(name, **kw)

    pool = WorkerPool(
        n_workers,
        opencv_threads=bcfg.opencv_threads_per_worker,
        start_timeout_s=bcfg.worker_start_timeout_s,
        on_event=on_event,
    )
    pool.start()
    pending = list(range(len(images)))[::-1]
    remaining = len(images)
    try:
        while remaining:
            while pending:
                i = pending[-1]
                job = (_work, (str(images[i]), stems[i], str(out), settings))
                if not pool.submit(str(i), "call", job, None, 0, bcfg.image_timeout_s):
                    break
                pending.pop()
            deadline = pool.next_deadline()
            wait(pool.wait_objects(), timeout=None if deadline is None else max(0.0, deadline - time.monotonic()))
            for fin in pool.collect():
                i = int(fin.job_id)
                if fin.doc is not None:
                    docs[i] = fin.doc
                else:
                    docs[i] = _failed_doc(images[i], stems[i], out, settings, fin.error)
                remaining -= 1
                bar.update(1)
                if log is not None:
                    d = docs[i]
                    log.debug(
                        "image inspected", image=images[i].name, status=d["status"], defects=d["counts"]["total"],
                        error_code=(d["error"] or {}).get("code"), **{f"{k}_s": v for k, v in d["timings_s"].items()},
                    )
    finally:
        pool.stop()
        bar.close()
    result = BatchResult(docs=[d for d in docs if d is not None], out_dir=out, wall_s=time.perf_counter() - t0)
    result.outputs.update(write_batch_outputs(result.docs, out, settings))
    return result


def write_batch_outputs(docs: list[dict], out: Path, settings: RunSettings) -> dict[str, str]:
    from dscope.reporting.tables import write_summary_csv

    written = {}
    p = out / SUMMARY_CSV
    write_summary_csv(docs, p)
    written["summary_csv"] = str(p)
    if settings.config.output.write_plots and docs:
        from dscope.reporting.plots import batch_summary_plot, polar_defect_map

        batch_summary_plot(docs, out / BATCH_PLOT)
        polar_defect_map(docs, out / POLAR_PLOT)
        written["batch_plot"] = str(out / BATCH_PLOT)
        written["polar_map"] = str(out / POLAR_PLOT)
    manifest = {
        "images": len(docs),
        "status_counts": status_counts(docs),
        "outputs": written,
    }
    (out / "batch.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return written
