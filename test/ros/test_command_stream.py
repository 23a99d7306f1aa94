"""The command-stream probe (`genpolicy bench --ros-seconds`, `python -m
genpolicy_ros.ros.command_stream`): `genpolicy node` in a process of its own, a probe robot
here, over real DDS. Asserts the stream (rate, content, report), never its timing."""
import json
import math
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytestmark = pytest.mark.ros

from genpolicy_ros.ros.command_stream import StreamProbeConfig, gap_statistics, measure_command_stream  # noqa: E402

import policy_node_harness as H  # noqa: E402  (test/ros is on pytest's pythonpath)

DOMAIN_ID = 78


def test_gap_statistics_of_a_known_sequence():
    times = np.array([0.0, 0.010, 0.020, 0.033, 0.040])  # gaps 10, 10, 13, 7 ms
    g = gap_statistics(times, 0.010)
    assert g["interarrival_max_ms"] == pytest.approx(13.0)
    assert g["jitter_max_ms"] == pytest.approx(3.0)
    assert g["jitter_p50_ms"] == pytest.approx(1.5)
    assert gap_statistics([1.0], 0.01)["jitter_p99_ms"] is None


@pytest.mark.parametrize("bad", [dict(seconds=0.0), dict(rate_hz=5000.0), dict(output_mode="velocity"),
                                 dict(warmup_s=float("nan")), dict(domain_id=400)])
def test_probe_config_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        StreamProbeConfig(model_dir="unused", **bad)


@pytest.mark.parametrize("output_mode", ["forward_command", "joint_trajectory"])
def test_node_in_its_own_process_streams_finite_commands_at_the_configured_rate(tmp_path, output_mode):
    model = H.make_model_dir(tmp_path / "model")
    cfg = StreamProbeConfig(model_dir=model, seconds=3.0, warmup_s=0.5, rate_hz=50.0, output_mode=output_mode,
                            backend="torch", domain_id=DOMAIN_ID)
    r = measure_command_stream(cfg, log=lambda m: None)
    assert r["nonfinite_commands"] == 0
    assert r["node_loaded_torch"] is False, "the node process imported torch (only the generation child may)"
    # Counted, not timed: 3 s at 50 Hz is 150 commands; a busy CI machine may lose a few.
    assert 0.8 * 150 <= r["commands"] <= 1.05 * 150 + 2, r["commands"]
    assert 40.0 <= r["rate_hz_measured"] <= 52.0, r["rate_hz_measured"]
    cb = r["probe_callback"]
    assert cb["interarrival_p50_ms"] == pytest.approx(20.0, abs=5.0), cb  # the period, not a burst
    if r["message_info"]:
        assert r["middleware"]["interarrival_p50_ms"] == pytest.approx(20.0, abs=5.0)
    diag = r["node_diagnostics"]
    assert diag["generation_errors"] == "0" and int(diag["chunks_total"]) > 0, diag
    assert math.isfinite(r["node_cpu_percent"]) and r["node_cpu_percent"] > 0
    json.dumps(r, allow_nan=False)  # the report is plain JSON


def test_module_cli_writes_a_report(tmp_path):
    model = H.make_model_dir(tmp_path / "model")
    out = tmp_path / "stream.json"
    done = subprocess.run([sys.executable, "-m", "genpolicy_ros.ros.command_stream", model, "--seconds", "1.5",
                           "--warmup", "0.3", "--rate", "50", "--backend", "torch", "--domain-id",
                           str(DOMAIN_ID + 1), "--json", str(out)], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ROS command stream @ 50 Hz" in done.stdout
    assert json.loads(out.read_text())["format"] == "genpolicy-command-stream/1"
    bad = subprocess.run([sys.executable, "-m", "genpolicy_ros.ros.command_stream", str(tmp_path / "missing")],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "missing" in bad.stderr, bad.stderr[-2000:]


def test_genpolicy_bench_reports_the_ros_command_stream(tmp_path, capsys):
    from genpolicy_ros.cli import main

    model = H.make_model_dir(tmp_path / "model")
    out = tmp_path / "bench.json"
    status = main(["bench", model, "--json", str(out), "--skip-latency", "--skip-executor", "--skip-seams",
                   "--ros-seconds", "1.5", "--rate", "50", "--executor-backend", "torch", "--no-progress"])
    assert status == 0
    ros = json.loads(out.read_text())["ros_command_stream"]
    assert not ros.get("skipped"), ros
    assert ros["settings"]["rate_hz"] == 50.0 and ros["commands"] >= 0.8 * 75 and ros["nonfinite_commands"] == 0
    assert "ROS command stream @ 50 Hz, node in its own process" in capsys.readouterr().out


@pytest.mark.parametrize("supported", [True, False])
def test_subscribe_with_info_passes_receive_stamps_or_none(monkeypatch, supported):
    """Real DDS: with MessageInfo support the callback gets the middleware's stamps; without
    it (Humble's rclpy) the one-parameter form is used and the callback gets None."""
    import time

    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from std_msgs.msg import Float64MultiArray

    from genpolicy_ros.ros import message_info as MI
    from genpolicy_ros.ros.qos import command_qos

    if supported:
        assert MI.message_info_supported(), "this rclpy should pass MessageInfo"
    else:
        monkeypatch.setattr(MI, "message_info_supported", lambda: False)
    ctx = Context()
    rclpy.init(context=ctx, domain_id=DOMAIN_ID + 2)
    try:
        node = rclpy.create_node("info_probe", context=ctx)
        got = []
        assert MI.subscribe_with_info(node, Float64MultiArray, "probe", lambda m, i: got.append((m, i)),
                                      command_qos()) is supported
        pub = node.create_publisher(Float64MultiArray, "probe", command_qos())
        executor = SingleThreadedExecutor(context=ctx)
        executor.add_node(node)
        deadline = time.monotonic() + 10.0
        while not got and time.monotonic() < deadline:
            pub.publish(Float64MultiArray(data=[1.0]))
            executor.spin_once(timeout_sec=0.1)
        executor.remove_node(node)
        assert got, "nothing received"
        msg, info = got[0]
        assert list(msg.data) == [1.0]
        if supported:
            assert info["received_timestamp"] >= info["source_timestamp"] > 0, info
        else:
            assert info is None
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=ctx)
