"""Where the generation process runs: CPU split and niceness, applied in the child and reported."""
import os
import subprocess
import sys
import textwrap

import pytest

from genpolicy_ros.runtime.cpu_placement import ProcessPlacement, allowed_cpus, split_cpus
from genpolicy_ros.runtime.generation_worker import GenerationWorker, WorkerConfig


def test_split_gives_the_last_cpu_to_generation_and_the_rest_to_the_command_loop():
    assert split_cpus(frozenset({0, 1})) == (frozenset({0}), frozenset({1}))
    assert split_cpus(frozenset({2, 5, 7, 9})) == (frozenset({2, 5, 7}), frozenset({9}))
    assert split_cpus(frozenset({3})) is None  # one CPU: nothing to split


@pytest.mark.parametrize("bad", [-1, 20, True, 1.5])
def test_worker_config_refuses_a_bad_niceness(bad):
    with pytest.raises(ValueError, match="niceness"):
        WorkerConfig(model_dir="m", niceness=bad)


@pytest.mark.parametrize("bad", [(), (0, -1), [0], (True,)])
def test_worker_config_refuses_a_bad_cpu_set(bad):
    with pytest.raises(ValueError, match="cpus"):
        WorkerConfig(model_dir="m", cpus=bad)


def test_pin_process_moves_threads_that_already_exist():
    """Run in a separate interpreter (pinning the test runner would change every later test)."""
    target = min(allowed_cpus())
    code = textwrap.dedent(f"""
        import os, threading, time
        from genpolicy_ros.runtime.cpu_placement import pin_process
        stop = threading.Event()
        t = threading.Thread(target=stop.wait, daemon=True); t.start()  # exists before pinning
        assert pin_process(frozenset({{{target}}})) == ""
        late = threading.Thread(target=stop.wait, daemon=True); late.start()  # created after
        time.sleep(0.05)
        for tid in os.listdir("/proc/self/task"):
            print(sorted(os.sched_getaffinity(int(tid))))
        stop.set()
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split()
    assert len(lines) >= 3 and set(lines) == {f"[{target}]"}


@pytest.mark.timeout(120)
def test_the_generation_child_runs_at_the_asked_niceness_and_cpus(tiny_model_dir):
    cpus = allowed_cpus()
    own_nice = os.getpriority(os.PRIO_PROCESS, 0)  # the suite may itself run under `nice`
    want = max(7, own_nice)  # niceness is only ever raised
    placement = ProcessPlacement(cpu_split=len(cpus) > 1)
    kwargs = placement.worker_kwargs(7)
    w = GenerationWorker(WorkerConfig(model_dir=str(tiny_model_dir), backend="eager", **kwargs))
    try:
        assert w.wait_ready(120)
        report = w.info["placement"]
        assert report["niceness"] == want and report["problems"] == []
        assert os.getpriority(os.PRIO_PROCESS, w.pid) == want  # seen from outside, not only reported
        if len(cpus) > 1:
            assert report["cpus"] == [max(cpus)]
            assert os.sched_getaffinity(w.pid) == {max(cpus)}
        lines = ProcessPlacement(cpu_split=False).apply_here(report, gc_freeze=False)
        assert lines == [f"generation process: nice {want}, CPUs {report['cpus']} (ok)"]
    finally:
        w.close()
    assert os.getpriority(os.PRIO_PROCESS, 0) == own_nice and os.sched_getaffinity(0) == set(cpus)  # parent untouched
