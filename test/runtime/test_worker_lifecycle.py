"""The generation child never outlives its parent; close() never waits for a busy or starting child."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from genpolicy_ros.runtime.generation_worker import GenerationRequest, GenerationWorker, WorkerConfig, WorkerState
from genpolicy_ros.runtime.sampler_settings import SamplerSettings

SLOW_LOADER = """
import time
def load(model_dir):
    time.sleep(120)  # a child stuck in its start (loading / exporting)
"""


def process_alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (dead, not yet reaped by its new parent) counts as gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
            return True
        except ProcessLookupError:
            return False


def wait_gone(pid: int, deadline_s: float = 5.0) -> bool:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if not process_alive(pid):
            return True
        time.sleep(0.02)
    return False


def start_parent(tmp_path, model_dir, state: str) -> tuple[subprocess.Popen, int]:
    """A parent process that starts a GenerationWorker and prints the child's pid once the
    child is ``ready`` (served a request) or ``starting`` (stuck in a slow loader)."""
    (tmp_path / "slow_loader.py").write_text(SLOW_LOADER)
    loader = "slow_loader:load" if state == "starting" else "genpolicy_ros.core.checkpoint:load_model_dir"
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(tmp_path)!r})
        from genpolicy_ros.runtime.generation_worker import GenerationWorker, WorkerConfig
        if __name__ == "__main__":
            w = GenerationWorker(WorkerConfig(model_dir={str(model_dir)!r}, backend="eager", loader={loader!r}))
            if {state!r} == "ready":
                assert w.wait_ready(120), w.poll()
            while w.pid is None:
                w.poll(); time.sleep(0.01)
            print(w.pid, flush=True)
            time.sleep(600)
    """)
    path = tmp_path / f"parent_{state}.py"
    path.write_text(script)
    parent = subprocess.Popen([sys.executable, str(path)], stdout=subprocess.PIPE, text=True)
    line = parent.stdout.readline()
    assert line.strip().isdigit(), f"parent did not report a child pid (exit {parent.poll()})"
    return parent, int(line)


@pytest.mark.parametrize("state", ["ready", "starting"])
def test_child_dies_when_its_parent_is_sigkilled(tmp_path, tiny_model_dir, state):
    parent, child = start_parent(tmp_path, tiny_model_dir, state)
    try:
        assert process_alive(child)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        assert wait_gone(child), f"generation child {child} outlived its SIGKILLed parent ({state})"
    finally:
        if parent.poll() is None:
            parent.kill()
        parent.stdout.close()
        if process_alive(child):
            os.kill(child, signal.SIGKILL)


def test_ppid_watch_alone_ends_an_orphan(tmp_path):
    """The portable fallback without prctl: a grandchild armed with use_prctl=False exits
    once its parent is gone."""
    grandchild = textwrap.dedent("""
        import os, sys, time
        from genpolicy_ros.runtime.generation_worker.lifeline import die_with_parent
        armed = die_with_parent(os.getppid(), use_prctl=False, poll_s=0.05)
        print(os.getpid(), ",".join(armed), flush=True)
        time.sleep(600)
    """)
    middle = textwrap.dedent(f"""
        import subprocess, sys, time
        p = subprocess.Popen([sys.executable, "-c", {grandchild!r}], stdout=subprocess.PIPE, text=True)
        print(p.stdout.readline().strip(), flush=True)
        time.sleep(600)
    """)
    parent = subprocess.Popen([sys.executable, "-c", middle], stdout=subprocess.PIPE, text=True)
    pid_text, armed = parent.stdout.readline().split()
    pid = int(pid_text)
    try:
        assert armed == "ppid-watch" and process_alive(pid)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        assert wait_gone(pid), "the ppid watch did not end the orphan"
    finally:
        parent.stdout.close()
        if process_alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("state", ["busy", "starting"])
def test_close_does_not_wait_for_the_child(tmp_path, tiny_model_dir, state):
    """A child generating for 120 s, or stuck in a 120 s start, is ended by close(): the test
    would hit its 60 s timeout if close() waited for it."""
    (tmp_path / "slow_loader.py").write_text(SLOW_LOADER)
    sys.path.insert(0, str(tmp_path))
    try:
        loader = "slow_loader:load" if state == "starting" else "genpolicy_ros.core.checkpoint:load_model_dir"
        w = GenerationWorker(WorkerConfig(model_dir=str(tiny_model_dir), backend="eager", loader=loader,
                                          request_timeout_s=300.0, heartbeat_timeout_s=300.0))
        if state == "busy":
            assert w.wait_ready(120)
            w.submit(GenerationRequest(seq=1, obs={"state": np.zeros((2, 4), np.float32)}, t0=0.0,
                                       settings=SamplerSettings(debug_sleep_s=120.0)))
            assert w.state == WorkerState.BUSY
        while w.pid is None:
            w.poll()
            time.sleep(0.01)
        pid = w.pid
        w.close()
        assert w.state == WorkerState.CLOSED
        assert wait_gone(pid, 5.0), "close() left the child running"
    finally:
        sys.path.remove(str(tmp_path))
