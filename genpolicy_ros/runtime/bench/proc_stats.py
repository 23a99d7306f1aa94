"""Resource use of a process tree, read from Linux ``/proc`` (ROS-free; used by the soak).

For a root process (``genpolicy node``) and its live descendants (the generation child,
multiprocessing's resource tracker), per process: resident memory (``VmRSS``), open file
descriptors (entries of ``/proc/PID/fd``), threads (``Threads``) and CPU seconds (user +
system). :func:`tree_snapshot` sums them per *role*:

* ``node`` — the root process;
* ``generation`` — a ``multiprocessing`` spawned child (the generation worker);
* ``resource_tracker`` — multiprocessing's resource tracker, when there is one;
* ``other`` — anything else below the root.

A process that ends while it is being read is skipped (it is simply not there any more).
On a system without ``/proc`` every reading is empty.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Optional

ROLES = ("node", "generation", "resource_tracker", "other")
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def children(pid: int) -> List[int]:
    """Direct children of ``pid`` (all its threads' ``children`` lists)."""
    out: List[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            out += [int(c) for c in (task / "children").read_text().split()]
    except (OSError, ValueError):
        pass
    return out


def descendants(pid: int) -> List[int]:
    """Every live descendant of ``pid``, parents before children."""
    found: List[int] = []
    pending = children(pid)
    while pending:
        p = pending.pop(0)
        found.append(p)
        pending += children(p)
    return found


def process_info(pid: int) -> Optional[Dict[str, object]]:
    """``{pid, rss_kib, fds, threads, cpu_s, cmdline}`` of one process, or None when it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        return {"pid": pid, "rss_kib": int(fields.get("VmRSS", "0 kB").split()[0]),
                "fds": fds, "threads": int(fields["Threads"].split()[0]),
                "cpu_s": (int(stat[11]) + int(stat[12])) / _TICK, "cmdline": cmdline}
    except (OSError, ValueError, KeyError, IndexError):
        return None


def role_of(cmdline: str, is_root: bool) -> str:
    """The role (see the module docstring) of a process with this command line."""
    if is_root:
        return "node"
    if "resource_tracker" in cmdline:
        return "resource_tracker"
    if "multiprocessing" in cmdline:
        return "generation"
    return "other"


def tree_snapshot(root_pid: int) -> Dict[str, Dict[str, object]]:
    """Per role present: ``{rss_kib, fds, threads, cpu_s, pids}`` summed over its processes.
    Empty when the root is gone."""
    out: Dict[str, Dict[str, object]] = {}
    for pid in [root_pid, *descendants(root_pid)]:
        info = process_info(pid)
        if info is None:
            continue
        role = role_of(str(info["cmdline"]), pid == root_pid)
        acc = out.setdefault(role, {"rss_kib": 0, "fds": 0, "threads": 0, "cpu_s": 0.0, "pids": []})
        for key in ("rss_kib", "fds", "threads", "cpu_s"):
            acc[key] += info[key]
        acc["pids"].append(pid)
    return out


def load_average() -> Optional[float]:
    """The 1-minute load average of the machine (None where unavailable)."""
    try:
        return float(os.getloadavg()[0])
    except (OSError, AttributeError):
        return None
