"""How fast `genpolicy node` ends on SIGINT / SIGTERM in each lifecycle state, and whether its
generation process survives it (issue 9 §4: within 1 s, never an orphan).

    python scripts/node_exit_times.py [--model models/reach_flow] [--repeats 3]

Prints one line per (state, signal, repeat): seconds from the signal to the exit, the exit
status, the children before the signal and those still alive 0.5 s after the exit. It also
SIGKILLs an active node and reports whether its generation child died with it.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def children(pid: int) -> list:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def running(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (dead, waiting to be reaped by its new parent — in a
    container PID 1 may never reap it) counts as gone."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def configure(domain: int) -> None:
    import rclpy
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor

    context = Context()
    rclpy.init(context=context, domain_id=domain)
    node = rclpy.create_node("exit_times_client", context=context)
    client = node.create_client(ChangeState, "/genpolicy/change_state")
    client.wait_for_service(timeout_sec=30.0)
    request = ChangeState.Request()
    request.transition.id = Transition.TRANSITION_CONFIGURE
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    executor.spin_until_future_complete(client.call_async(request), timeout_sec=60.0)
    node.destroy_node()
    rclpy.try_shutdown(context=context)


def run(model: str, state: str, sig: int, domain: int) -> str:
    cmd = [sys.executable, "-m", "genpolicy_ros.cli", "node", *(["--autostart"] if state == "active" else []),
           "--ros-args", "-p", f"model_path:={model}"]
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), PYTHONUNBUFFERED="1", RCUTILS_LOGGING_BUFFERED_STREAM="0")
    log_path = Path(f"/tmp/genpolicy_exit_{state}_{domain}.log")
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 90
        if state == "active":
            while time.time() < deadline and "active: executing" not in log_path.read_text():
                time.sleep(0.1)
        elif state == "inactive":
            configure(domain)
        else:
            time.sleep(2.0)
        time.sleep(0.5)
        kids = children(proc.pid)
        t = time.monotonic()
        proc.send_signal(sig)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        took = time.monotonic() - t
    time.sleep(0.5)
    alive = [k for k in kids if running(k)]
    log_path.unlink()
    name = signal.Signals(sig).name
    return f"{state:12s} {name:7s} exit {took:5.2f} s  status {proc.returncode}  children {kids}  alive after {alive}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/reach_flow")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    domain = 160
    for _ in range(args.repeats):
        for state in ("unconfigured", "inactive", "active"):
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
                if sig == signal.SIGKILL and state != "active":
                    continue
                print(run(args.model, state, sig, domain), flush=True)
                domain += 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
