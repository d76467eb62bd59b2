"""Focus-session bookkeeping: recent peak, stability, auto-capture (issue 7).

No camera and no threads here: the controller feeds one metric per preview
frame and publishes what :meth:`FocusTracker.update` returns, so the logic is
tested on plain numbers.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from dscope.hardware.base import Frame
from dscope.hardware.config import AutoCaptureConfig


@dataclass(frozen=True)
class FocusUpdate:
    """Result of one preview frame.

    ``peak`` is the maximum metric of the recent history (``peak_window_s``);
    ``stable`` says the last ``stable_frames`` metrics agree within the
    tolerance and sit at the peak; ``capture`` is the sharpest frame of that
    stable run when auto-capture fires (once per plateau), else None.
    """

    metric: float
    peak: float
    stable: bool
    relative: float
    capture: Frame | None = None


class FocusTracker:
    """Tracks a focus session.

    Parameters
    ----------
    auto : AutoCaptureConfig
        ``enabled``, ``stable_frames``, ``tolerance_fraction``, ``min_metric``.
    peak_window_s : float
        The peak is the maximum over this recent history, so a new connector
        (lower or higher metric) is followed within that time.

    Examples
    --------
    >>> from dscope.hardware.config import AutoCaptureConfig
    >>> t = FocusTracker(AutoCaptureConfig(enabled=True, stable_frames=2, tolerance_fraction=0.1), 60.0)
    >>> [t.update(m, float(i)).stable for i, m in enumerate([1.0, 5.0, 10.0, 10.2, 4.0])]
    [False, False, False, True, False]
    """

    def __init__(self, auto: AutoCaptureConfig, peak_window_s: float):
        self.auto = auto
        self.peak_window_s = peak_window_s
        self._history: deque[tuple[float, float]] = deque()
        self._recent: deque[tuple[float, Frame | None]] = deque(maxlen=auto.stable_frames)
        self._armed = True
        self._captured_metric: float | None = None
        #: Peak of the last session (kept after :meth:`reset`): reference for out-of-focus warnings.
        self.last_peak: float | None = None

    def reset(self) -> None:
        """Start a new session (history, plateau and arming cleared; ``last_peak`` kept)."""
        self._history.clear()
        self._recent.clear()
        self._armed = True
        self._captured_metric = None

    @property
    def peak(self) -> float:
        return max((m for _, m in self._history), default=0.0)

    def update(self, metric: float, time_s: float, frame: Frame | None = None) -> FocusUpdate:
        """Add one preview frame's metric (``time_s`` monotonic seconds) and evaluate."""
        metric = float(metric)
        self._history.append((time_s, metric))
        while self._history and self._history[0][0] < time_s - self.peak_window_s:
            self._history.popleft()
        self._recent.append((metric, frame))
        peak = self.peak
        self.last_peak = peak
        tol = self.auto.tolerance_fraction
        values = [m for m, _ in self._recent]
        stable = False
        if len(values) == self.auto.stable_frames:
            hi, lo = max(values), min(values)
            stable = hi > 0 and (hi - lo) <= tol * hi and hi >= (1.0 - tol) * peak
        capture = None
        if self._captured_metric is not None and metric < (1.0 - 2.0 * tol) * self._captured_metric:
            self._armed = True  # left the plateau: a new one may be captured
            self._captured_metric = None
        if self.auto.enabled and stable and self._armed and max(values) >= self.auto.min_metric:
            best_metric, best_frame = max(self._recent, key=lambda mf: mf[0])
            if best_frame is not None:
                capture = best_frame
            self._armed = False
            self._captured_metric = best_metric
        return FocusUpdate(metric, peak, stable, metric / peak if peak > 0 else 0.0, capture)
