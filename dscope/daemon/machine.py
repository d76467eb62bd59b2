"""The bench state machine (``transitions.extensions.LockedMachine``, thread-safe).

States and the explicit transition table :data:`TRANSITIONS` (trigger, sources, dest)::

    idle --calibrate--> calibrating --calibrated--> idle
    idle --focus_start--> focusing --focus_stop--> idle
    idle|inspecting|reporting --trigger--> capturing --captured--> inspecting
    idle|reporting --inspect--> inspecting ; inspecting --inspect--> (internal, no change)
    inspecting --report--> reporting --finish--> idle
    any --fail--> fault (error kept) ; fault --reset|recovered--> idle
    calibrating|capturing --abort--> idle  (a camera command failed without a fault)

A trigger that is not allowed in the current state raises
:class:`dscope.errors.DScopeError` with code ``invalid_state`` naming the state
and the triggers that are allowed; the machine never crashes on it.  Every
state change is reported once to ``on_change(old, new, trigger, error)``.

Examples
--------
>>> changes = []
>>> m = BenchMachine(on_change=lambda old, new, trig, err: changes.append((old, new, trig)))
>>> [m.fire(t) for t in ("inspect", "report", "finish")]
['inspecting', 'reporting', 'idle']
>>> changes[0]
('idle', 'inspecting', 'inspect')
>>> m.may("reset")
False
"""

from __future__ import annotations

import threading
from typing import Callable

from transitions import MachineError
from transitions.extensions import LockedMachine

from dscope.errors import DScopeError

STATES = ("idle", "calibrating", "focusing", "capturing", "inspecting", "reporting", "fault")

#: (trigger, source(s), destination); destination None = internal transition (no state change)
TRANSITIONS: tuple[tuple[str, str | list[str], str | None], ...] = (
    ("calibrate", "idle", "calibrating"),
    ("calibrated", "calibrating", "idle"),
    ("focus_start", "idle", "focusing"),
    ("focus_stop", "focusing", "idle"),
    ("trigger", ["idle", "inspecting", "reporting"], "capturing"),  # a busy hot folder does not block the camera
    ("captured", "capturing", "inspecting"),
    ("abort", ["calibrating", "capturing"], "idle"),
    ("inspect", ["idle", "reporting"], "inspecting"),
    ("inspect", "inspecting", None),
    ("report", "inspecting", "reporting"),
    ("finish", "reporting", "idle"),
    ("fail", list(STATES), "fault"),
    ("reset", "fault", "idle"),
    ("recovered", "fault", "idle"),
)

ChangeCallback = Callable[[str | None, str, str, dict | None], None]


class _Model:
    """Plain model object the machine decorates (keeps ``state``)."""


class BenchMachine:
    """Thread-safe wrapper of the bench state machine.

    Parameters
    ----------
    on_change : callable
        ``on_change(old, new, trigger, error)`` after every real state change
        (called with the machine lock held: keep it short, e.g. log + queue a message).
    """

    def __init__(self, on_change: ChangeCallback | None = None):
        self._on_change = on_change
        self.error: dict | None = None
        self._model = _Model()
        self._lock = threading.RLock()
        self._machine = LockedMachine(
            machine_context=[self._lock],
            model=self._model,
            states=list(STATES),
            transitions=[{"trigger": t, "source": s, "dest": d} for t, s, d in TRANSITIONS],
            initial="idle",
            auto_transitions=False,
            send_event=True,
            after_state_change=self._after,
            ignore_invalid_triggers=False,
        )
        self._pending_error: dict | None = None

    @property
    def state(self) -> str:
        return self._model.state

    def may(self, trigger: str) -> bool:
        """Whether ``trigger`` is allowed now."""
        return trigger in self._machine.get_triggers(self.state)

    def allowed(self) -> list[str]:
        return sorted(set(self._machine.get_triggers(self.state)))

    def fire(self, trigger: str, error: dict | None = None) -> str:
        """Apply ``trigger``; return the new state or raise ``DScopeError('invalid_state')``."""
        with self._lock:  # re-entrant lock shared with the machine: check + fire atomically
            if not self.may(trigger):
                raise DScopeError(
                    "invalid_state",
                    f"cannot {trigger} while {self.state}; allowed now: {', '.join(self.allowed()) or 'nothing'}",
                    state=self.state,
                )
            self._pending_error = error
            try:
                self._model.trigger(trigger)  # generic dispatch: an event may be named "trigger"
            except MachineError as exc:  # pragma: no cover - guarded by may()
                raise DScopeError("invalid_state", str(exc.value), state=self.state) from None
            return self.state

    def try_fire(self, trigger: str, error: dict | None = None) -> bool:
        """Apply ``trigger`` when allowed; False (no exception) otherwise."""
        try:
            self.fire(trigger, error)
        except DScopeError:
            return False
        return True

    def _after(self, event) -> None:
        old = event.transition.source
        new = event.transition.dest
        if new is None or old == new and event.event.name != "fail":
            return
        trigger = event.event.name
        if new == "fault":
            self.error = self._pending_error
        elif old == "fault":
            self.error = None
        if self._on_change is not None:
            self._on_change(old, new, trigger, self.error if new == "fault" else None)
