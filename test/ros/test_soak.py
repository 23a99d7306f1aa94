"""`genpolicy bench MODEL --soak-seconds N` end to end (a 3-second soak: the plumbing, not
the figures; the 10-minute soak is a measurement, not a test), and what the soak turned up:
the node process stays torch-free once chunks flow.

The node runs in a process of its own (genpolicy node), the probe here, over real DDS."""
import json
import os
import time

import pytest

pytest.importorskip("rclpy")
pytestmark = pytest.mark.ros

from genpolicy_ros.ros.command_stream import StreamProbeConfig, node_and_probe  # noqa: E402

import policy_node_harness as H  # noqa: E402  (test/ros is on pytest's pythonpath)

DOMAIN_ID = 60 + os.getpid() % 10  # 60..69: clear of test_replay (40..59) and the fixed suites (71..80)


def test_bench_soak_alone_writes_windows_table_and_plot(tmp_path, capsys):
    from genpolicy_ros.cli import main

    model = H.make_model_dir(tmp_path / "model", cameras=("overhead",))
    out, plots = tmp_path / "soak.json", tmp_path / "plots"
    status = main(["bench", model, "--soak-seconds", "3", "--soak-window-s", "1", "--json", str(out),
                   "--plot", str(plots), "--executor-backend", "torch"])
    assert status == 0
    report = json.loads(out.read_text())
    for section in ("executor", "seams", "ros_command_stream"):
        assert report[section]["skipped"] and "soak runs alone" in report[section]["reason"], report[section]
    soak = report["soak"]
    assert [w["index"] for w in soak["windows"]] == [0, 1, 2]
    assert soak["summary"]["commands"] > 0 and soak["summary"]["nonfinite_commands"] == 0
    for w in soak["windows"]:
        assert w["commands"] > 0 and w["rx_jitter_p99_ms"] is not None
        for role in ("node", "generation"):
            p = w["processes"][role]
            assert p["rss_mib"] > 10 and p["fds"] >= 3 and p["threads"] >= 1, (role, p)
    assert soak["summary"]["generation_errors"] == 0
    assert (plots / "soak.png").read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert "soak: 3 s of genpolicy node" in printed and "summary:" in printed


def test_bench_soak_refuses_bad_arguments(tmp_path, capsys):
    from genpolicy_ros.cli import main

    model = H.make_model_dir(tmp_path / "model")
    for bad in (["--soak-seconds", "-5"], ["--soak-seconds", "5", "--soak-window-s", "0"]):
        assert main(["bench", model, "--json", str(tmp_path / "x.json"), *bad]) == 2
    assert "--soak-window-s must be > 0" in capsys.readouterr().err


def _maps(pid: int) -> str:
    with open(f"/proc/{pid}/maps") as f:
        return f.read()


def test_the_node_process_stays_torch_free_once_chunks_flow(tmp_path):
    """Found by the soak: with chunk_blending rtc the first RTC request imported torch in the
    node process, in the executor thread (a 1-3 s stall of the command stream). The RTC
    weights are NumPy now (core/rtc_weights.py)."""
    model = H.make_model_dir(tmp_path / "model")
    cfg = StreamProbeConfig(model_dir=model, seconds=1.0, backend="torch", domain_id=DOMAIN_ID)
    with node_and_probe(cfg, log=lambda m: None) as (node, probe, _):
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline and "libtorch" not in _maps(node.pid):
            time.sleep(0.2)
        assert "libtorch" not in _maps(node.pid), "the node process loaded torch while commanding"
