"""Parent-side supervision of the generation child: fault detection and the restart policy.

A child that exits (crash, OOM kill, SIGKILL) is detected from its exit code; a hung
child from a stale heartbeat (frozen process) or from a request older than
``request_timeout_s`` (stuck in generation); a child that never gets ready from
``start_timeout_s``. The owner then kills the child, reports a
:class:`~.messages.WorkerError` and starts a new child after a backoff
(``restart_backoff_s`` doubling up to ``restart_backoff_max_s``; reset by a success) —
or gives up after ``max_start_failures`` consecutive failed starts.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .config import WorkerConfig
from .messages import WorkerState


def check_child(cfg: WorkerConfig, state: WorkerState, now: float, *, alive: bool, pid: Optional[int],
                exitcode: Optional[int], started_at: float, heartbeat_at: float, sent_at: float,
                in_flight_seq: Optional[int]) -> Optional[tuple[str, str]]:
    """``(kind, message)`` of the fault a running child shows at ``now``, or None.

    Times are ``time.monotonic()`` seconds; ``heartbeat_at`` is the child's last beat.
    """
    if not alive:
        return "crashed", f"generation child (pid {pid}) exited with code {exitcode}"
    if state == WorkerState.STARTING:
        if now - started_at > cfg.start_timeout_s:
            return "hung", f"generation child not ready after {cfg.start_timeout_s:.1f} s"
        return None
    if now - heartbeat_at > cfg.heartbeat_timeout_s:
        return "hung", f"no heartbeat from the generation child for {now - heartbeat_at:.2f} s"
    if state == WorkerState.BUSY and now - sent_at > cfg.request_timeout_s:
        return "hung", (f"request {in_flight_seq} unanswered after {now - sent_at:.2f} s "
                        f"(request_timeout_s={cfg.request_timeout_s})")
    return None


@dataclass
class RestartPolicy:
    """Backoff between restarts, and when to give up (see module docstring)."""

    cfg: WorkerConfig
    failures: int = 0  # consecutive faults of any kind (for the backoff)
    start_failures: int = 0  # consecutive failed starts (for giving up)

    def on_fault(self, kind: str) -> Optional[float]:
        """Record a fault; the delay before the next start, or None to give up."""
        self.failures += 1
        if kind == "start_failed":
            self.start_failures += 1
        if self.start_failures >= self.cfg.max_start_failures:
            return None
        return min(self.cfg.restart_backoff_s * 2 ** (self.failures - 1), self.cfg.restart_backoff_max_s)

    def on_ready(self) -> None:
        self.start_failures = 0

    def on_success(self) -> None:
        self.failures = 0

    def reset(self) -> None:
        self.failures = self.start_failures = 0
