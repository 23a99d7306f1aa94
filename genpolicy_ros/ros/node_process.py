"""``genpolicy node`` as a child process: the command line and a small process handle.

Evaluation and the command-stream benchmark run the policy node the way a robot does — in
a process of its own, so that its command loop shares the interpreter lock with nobody
but itself — and talk to it over DDS on a chosen ``ROS_DOMAIN_ID``.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterable, List, Mapping, Sequence


def default_domain_id() -> int:
    """A ROS domain for this process's evaluation or replay (201..230, derived from the pid;
    away from the test suites' 71..199)."""
    return 201 + os.getpid() % 30


def node_command(params: Mapping[str, object], extra: Iterable[str] = ()) -> List[str]:
    """``python -m genpolicy_ros.cli node [extra] --ros-args -p name:=value ...``.

    Booleans are written ``true``/``false`` (rcl's YAML parser); ``None`` values are left out.
    """
    cmd = [sys.executable, "-m", "genpolicy_ros.cli", "node", *extra, "--ros-args"]
    for name, value in params.items():
        if value is None:
            continue
        text = str(value).lower() if isinstance(value, bool) else str(value)
        cmd += ["-p", f"{name}:={text}"]
    return cmd


class NodeProcess:
    """A child process on a given ROS domain; its output goes to a temporary log file."""

    def __init__(self, command: Sequence[str], domain_id: int):
        env = dict(os.environ, ROS_DOMAIN_ID=str(domain_id), OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"),
                   PYTHONUNBUFFERED="1", RCUTILS_LOGGING_BUFFERED_STREAM="0")
        self.log = tempfile.NamedTemporaryFile(prefix="genpolicy_node_", suffix=".log", delete=False)
        self.proc = subprocess.Popen(list(command), env=env, stdout=self.log, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_text(self) -> str:
        try:
            return Path(self.log.name).read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, n: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-n:])

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGINT (the node's main shuts down cleanly), SIGKILL after ``timeout_s``; removes the log."""
        if self.alive():
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5.0)
        self.log.close()
        try:
            os.unlink(self.log.name)
        except OSError:
            pass


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds so far of ``pid`` and its live descendants (Linux
    ``/proc``; NaN elsewhere or when one of them vanished mid-read)."""
    try:
        tick = os.sysconf("SC_CLK_TCK")
        total = 0.0
        pending = [pid]
        while pending:
            p = pending.pop()
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
            for task in Path(f"/proc/{p}/task").iterdir():
                children = (task / "children").read_text().split()
                pending += [int(c) for c in children]
        return total
    except (OSError, ValueError, IndexError):
        return float("nan")
