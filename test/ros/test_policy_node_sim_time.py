"""Policy node under ``use_sim_time`` with a simulator slower than real time (issue 10: an
image-rendering simulator on a CPU runs at a real-time factor below 1, as Gazebo does).

A clock node publishes ``/clock`` at a real-time factor of 0.25; the fake robot stamps its
joint states on that clock. The node must command once per *simulated* control period
(about 100 commands per simulated second, not 400 — on the wall clock the safety filter's
per-tick velocity limit would then allow four times the speed in simulated time).
"""
import threading
import time

import pytest

pytest.importorskip("rclpy")
pytestmark = pytest.mark.ros

import rclpy  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rosgraph_msgs.msg import Clock as ClockMsg  # noqa: E402

from genpolicy_ros.ros.policy_node import PolicyNode  # noqa: E402
from genpolicy_ros.runtime.rate_loop import RateLoop  # noqa: E402

import policy_node_harness as H  # noqa: E402  (test/ros is on pytest's pythonpath)

DOMAIN_ID = 86
RTF = 0.25
SIM_START_S = 1000.0


class SimClock:
    """Publishes /clock every 4 ms of wall time, advancing RTF x 4 ms of simulated time."""

    def __init__(self, context):
        self.node = rclpy.create_node("sim_clock", context=context)
        self.pub = self.node.create_publisher(ClockMsg, "/clock", 10)
        self.sim_ns = int(SIM_START_S * 1e9)
        self.lock = threading.Lock()
        self.loop = RateLoop(250.0, self._tick, name="sim_clock")

    def now_s(self) -> float:
        with self.lock:
            return self.sim_ns * 1e-9

    def _tick(self, tick):
        with self.lock:
            self.sim_ns += int(RTF * 0.004 * 1e9)
            ns = self.sim_ns
        msg = ClockMsg()
        msg.clock.sec, msg.clock.nanosec = divmod(ns, 1_000_000_000)
        self.pub.publish(msg)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    model = H.make_model_dir(tmp_path_factory.mktemp("model") / "flow")
    harness = H.RosHarness(DOMAIN_ID)
    clock = SimClock(harness.context)
    clock.loop.start()
    ex = rclpy.executors.SingleThreadedExecutor(context=harness.context)
    ex.add_node(clock.node)
    threading.Thread(target=ex.spin, daemon=True).start()
    node = PolicyNode(context=harness.context, diagnostics_period_s=0.2, parameter_overrides=[
        Parameter("use_sim_time", value=True), Parameter("model_path", value=model),
        Parameter("control_rate_hz", value=100.0), Parameter("backend", value="torch"),
        Parameter("device", value="cpu"), Parameter("observation_timeout_s", value=0.5)])
    robot = harness.start(node)
    robot.node.set_parameters([Parameter("use_sim_time", value=True)])
    assert H.wait_for(lambda: robot.node.get_clock().now().nanoseconds > SIM_START_S * 1e9, 5.0), "no /clock"
    assert robot.transition(H.CONFIGURE) and robot.transition(H.ACTIVATE)
    robot.start()
    assert H.wait_for(lambda: robot.n_commands() > 0, 20.0), "no command under sim time"
    yield harness, clock
    clock.loop.stop()
    ex.shutdown(timeout_sec=2.0)
    clock.node.destroy_node()
    harness.close()


def test_commands_follow_simulated_time_not_the_wall_clock(env):
    harness, clock = env
    robot = harness.robot
    t_sim0, n0, t_wall0 = clock.now_s(), robot.n_commands(), time.monotonic()
    time.sleep(4.0)
    t_sim1, n1 = clock.now_s(), robot.n_commands()
    sim_s = t_sim1 - t_sim0
    per_sim_second = (n1 - n0) / sim_s
    # 100 Hz in simulated time; on the wall clock it would be ~400 per simulated second.
    assert 60.0 <= per_sim_second <= 115.0, (per_sim_second, sim_s, time.monotonic() - t_wall0)
    stats = harness.node.executor_stats()
    assert stats["rate_hz"] == pytest.approx(100.0)

