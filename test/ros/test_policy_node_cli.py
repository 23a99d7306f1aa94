"""``genpolicy node`` as a real process: ``--ros-args`` as ``ros2 run`` passes them,
``--autostart`` configures + activates, Ctrl-C ends it cleanly (status 0, child reaped)."""
import os
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("rclpy")
pytestmark = pytest.mark.ros

DOMAIN_ID = 75


def _make_model(path):
    import policy_node_harness  # test/ros is on pytest's pythonpath

    return policy_node_harness.make_model_dir(path)


def test_genpolicy_node_autostarts_with_ros_args_and_stops_on_ctrl_c(tmp_path):
    model = _make_model(tmp_path / "model")
    env = dict(os.environ, ROS_DOMAIN_ID=str(DOMAIN_ID), PYTHONUNBUFFERED="1", RCUTILS_LOGGING_BUFFERED_STREAM="0")
    cmd = [sys.executable, "-m", "genpolicy_ros.cli", "node", "--autostart", "--ros-args",
           "-r", "__node:=genpolicy_cli", "-p", f"model_path:={model}", "-p", "backend:=torch",
           "-p", "device:=cpu", "-p", "control_rate_hz:=20.0"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        deadline = time.monotonic() + 60.0
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "active: executing at 20 Hz" in line:
                break
        assert any("active: executing at 20 Hz" in ln for ln in lines), "".join(lines[-20:])
        assert any("[genpolicy_cli]" in ln for ln in lines), "the __node remap was not applied"
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20.0)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, f"exit status {proc.returncode}:\n{''.join(lines[-10:])}{out[-2000:]}"
    assert "Traceback" not in out, out[-3000:]
