"""The generation child never outlives its parent, even when the parent is SIGKILLed.

Two mechanisms, both armed by :func:`die_with_parent` right after the child starts:

* **Linux**: ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` (through ctypes): the kernel kills the
  child the moment the *thread* that started it exits. The parent therefore starts
  children from one long-lived launcher thread (see :mod:`.process`), never from a
  short-lived one.
* **Everywhere**: a daemon thread polls ``os.getppid()``; when the parent dies the child
  is re-parented (to init or a subreaper), the parent pid changes and the thread ends
  the process with ``os._exit``. It also catches a parent that died before ``prctl`` ran.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
EXIT_PARENT_GONE = 70  # exit status of a child whose parent disappeared


def set_parent_death_signal(sig: int = signal.SIGKILL) -> bool:
    """Ask the Linux kernel to send ``sig`` to this process when its parent thread exits.
    Returns False where that is not available (other systems, no libc)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent_pid: int, poll_s: float) -> None:
    stop = threading.Event()
    while not stop.wait(poll_s):
        if os.getppid() != parent_pid:
            os._exit(EXIT_PARENT_GONE)


def die_with_parent(parent_pid: int, *, poll_s: float = 0.1, use_prctl: bool = True) -> list[str]:
    """Arm both mechanisms for a child whose parent is ``parent_pid``; returns the ones armed.

    Exits at once if the parent is already gone (``os.getppid() != parent_pid``).
    """
    armed = []
    if use_prctl and set_parent_death_signal():
        armed.append("pdeathsig")
    if os.getppid() != parent_pid:  # the parent died before (or while) we armed
        os._exit(EXIT_PARENT_GONE)
    threading.Thread(target=_watch_parent, args=(parent_pid, poll_s), name="genpolicy-parent-watch",
                     daemon=True).start()
    armed.append("ppid-watch")
    return armed
