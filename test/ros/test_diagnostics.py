"""/diagnostics level rules and message building; QoS profiles (real rclpy / message types)."""
import math

import pytest

pytest.importorskip("diagnostic_msgs.msg")

from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402

from genpolicy_ros.ros import diagnostics as D  # noqa: E402

HEALTHY = {"state": "active", "backend": "onnxruntime", "control_rate_hz": 50.0,
           "executor_rate_hz": 49.8, "generation_rate_hz": 6.1, "latency_p50_ms": 40.0,
           "latency_p95_ms": 70.0, "latency_budget_ms": 160.0, "holds": 0, "hold_reason": "",
           "paused": False, "drops": 0, "non_finite": 0, "generation_errors": 0,
           "rejected_messages": 0, "observation_age_s": 0.03, "observation_timeout_s": 0.5}


def test_healthy_is_ok():
    assert D.diagnostic_level(HEALTHY) == (D.OK, [])


@pytest.mark.parametrize("change, level, word", [
    ({"non_finite": 1}, D.ERROR, "non-finite"),
    ({"generation_errors": 2}, D.ERROR, "generation error"),
    ({"state": "error"}, D.ERROR, "error state"),
    ({"observation_age_s": 1.2}, D.ERROR, "stale"),            # > 2 x timeout
    ({"observation_age_s": math.inf}, D.ERROR, "stale"),
    ({"observation_age_s": 0.7}, D.WARN, "stale"),              # > timeout
    ({"hold_reason": "starved"}, D.WARN, "starved"),
    ({"holds": 3}, D.WARN, "held"),
    ({"drops": 4}, D.WARN, "dropped"),
    ({"latency_p95_ms": 200.0}, D.WARN, "budget"),
    ({"executor_rate_hz": 40.0}, D.WARN, "executor"),
    ({"rejected_messages": 7}, D.WARN, "rejected"),
    ({"paused": True, "hold_reason": "paused", "holds": 50}, D.OK, "paused"),
    ({"state": "inactive", "executor_rate_hz": 0.0}, D.OK, "inactive"),
])
def test_level_rules(change, level, word):
    got, reasons = D.diagnostic_level({**HEALTHY, **change})
    assert got == level, (got, reasons)
    assert any(word in r for r in reasons), reasons


def test_errors_listed_before_warnings_and_missing_keys_skip_rules():
    level, reasons = D.diagnostic_level({**HEALTHY, "drops": 1, "non_finite": 1})
    assert level == D.ERROR and "non-finite" in reasons[0] and "dropped" in reasons[1]
    assert D.diagnostic_level({}) == (D.OK, [])


def test_build_diagnostic_array():
    from builtin_interfaces.msg import Time

    array = D.build_diagnostic_array({**HEALTHY, "drops": 2}, stamp=Time(sec=3, nanosec=4))
    assert array.header.stamp == Time(sec=3, nanosec=4)
    (status,) = array.status
    assert status.level == DiagnosticStatus.WARN
    assert "dropped" in status.message
    values = {kv.key: kv.value for kv in status.values}
    assert values["backend"] == "onnxruntime" and values["drops"] == "2"
    assert list(values) == sorted(values)
    ok = D.build_diagnostic_array(HEALTHY).status[0]
    assert ok.level == DiagnosticStatus.OK and ok.message == "ok"
    err = D.build_diagnostic_array({"non_finite": 1}).status[0]
    assert err.level == DiagnosticStatus.ERROR


def test_qos_profiles():
    from rclpy.qos import HistoryPolicy, ReliabilityPolicy

    from genpolicy_ros.ros import qos

    sensor, command = qos.sensor_qos(), qos.command_qos()
    assert sensor.reliability == ReliabilityPolicy.BEST_EFFORT and sensor.depth == 5
    assert command.reliability == ReliabilityPolicy.RELIABLE and command.depth == 10
    assert sensor.history == command.history == HistoryPolicy.KEEP_LAST
    for bad in (0, -1, True, 2.5):
        with pytest.raises(ValueError):
            qos.make_qos(True, bad)
