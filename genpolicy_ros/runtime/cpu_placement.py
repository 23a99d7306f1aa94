"""Where the two processes of the policy node run: CPU sets and niceness (Linux, best effort).

The real-time process (command loop + subscriptions) and the generation process compete
for the same cores while a chunk is generated back to back. Two levers, both opt-in
(node parameters ``cpu_split`` and ``worker_niceness``, docs/ros.md):

- ``split_cpus(n)``: the generation process gets the last CPU of the allowed set, the
  real-time process the others (with one CPU both share it: nothing to split).
- ``worker_niceness``: the generation process runs at a higher nice value, so that on a
  contended core the scheduler prefers the command loop.

``sched_setaffinity`` and ``setpriority`` act on one thread on Linux; threads created
afterwards inherit. `pin_process` therefore walks ``/proc/self/task`` to move threads that
already exist. Every function returns what it did (or why not) instead of raising: a
machine that refuses (containers, macOS) runs unpinned, and the node says so.
"""
from __future__ import annotations

import os
from typing import FrozenSet, Optional, Tuple


def allowed_cpus() -> FrozenSet[int]:
    """The CPUs this process may run on (all of ``os.cpu_count()`` where affinity is unknown)."""
    try:
        return frozenset(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return frozenset(range(os.cpu_count() or 1))


def split_cpus(cpus: FrozenSet[int]) -> Optional[Tuple[FrozenSet[int], FrozenSet[int]]]:
    """``(real_time_cpus, generation_cpus)``: the last CPU for generation, the rest for the
    command loop; None with fewer than two CPUs (nothing to split)."""
    ordered = sorted(cpus)
    if len(ordered) < 2:
        return None
    return frozenset(ordered[:-1]), frozenset(ordered[-1:])


def pin_process(cpus: FrozenSet[int]) -> str:
    """Move every thread of this process (and those it creates later) onto ``cpus``.

    Returns ``""`` on success, else the reason it could not (the process stays as it was).
    """
    if not cpus:
        return "empty CPU set"
    if not hasattr(os, "sched_setaffinity"):
        return "os.sched_setaffinity is not available on this platform"
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        tids = [0]
    try:
        for tid in tids:
            try:
                os.sched_setaffinity(tid, cpus)
            except ProcessLookupError:
                continue  # the thread ended meanwhile
    except OSError as exc:
        return f"sched_setaffinity refused: {exc}"
    return ""


def lower_priority(niceness: int) -> str:
    """Raise this thread's nice value to ``niceness`` (threads created later inherit it).

    Returns ``""`` on success (or when nothing is asked: 0), else the reason.
    """
    if niceness <= 0:
        return ""
    try:
        current = os.getpriority(os.PRIO_PROCESS, 0)
        if current < niceness:
            os.setpriority(os.PRIO_PROCESS, 0, niceness)
    except (AttributeError, OSError) as exc:
        return f"setpriority refused: {exc}"
    return ""


class ProcessPlacement:
    """The node's plan for both processes, decided once per configure.

    ``worker_kwargs(niceness)`` -> the :class:`WorkerConfig` fields for the generation process;
    ``apply_here(child_report, gc_freeze)`` then places the real-time process itself (after the
    child is up, so the child never inherits the real-time CPU set) and returns log lines.
    """

    def __init__(self, cpu_split: bool) -> None:
        self.split = split_cpus(allowed_cpus()) if cpu_split else None  # (real-time, generation) or None
        self.cpu_split_asked = cpu_split

    def worker_kwargs(self, niceness: int) -> dict:
        kwargs = {"niceness": int(niceness)}
        if self.split is not None:
            kwargs["cpus"] = tuple(sorted(self.split[1]))
        return kwargs

    def apply_here(self, child_report: Optional[dict], gc_freeze: bool) -> list:
        lines = []
        if self.cpu_split_asked and self.split is None:
            lines.append("cpu_split: only one CPU allowed, nothing to split")
        elif self.split is not None:
            why = pin_process(self.split[0])
            failed = f" FAILED: {why}" if why else ""
            lines.append(f"cpu_split: command loop on CPUs {sorted(self.split[0])}{failed}")
        if child_report:
            problems = "; ".join(child_report.get("problems") or []) or "ok"
            lines.append(f"generation process: nice {child_report.get('niceness')}, CPUs {child_report.get('cpus')} "
                         f"({problems})")
        if gc_freeze:
            import gc

            gc.collect()
            gc.freeze()
            lines.append(f"gc_freeze: {gc.get_freeze_count()} objects moved to the permanent generation")
        return lines
