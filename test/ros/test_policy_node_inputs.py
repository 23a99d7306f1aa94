"""Policy node over real DDS: bad joint states, stale / zero / future / backwards stamps,
pause / resume and a burst of 10 000 malformed messages (reliability rows 3, 4, 5, 11, 17).

One active node for the module; the fake robot streams JointState at 100 Hz and a
``mutate`` hook injects each fault. Outcomes are read from the commands and /diagnostics.
"""
import ast
import math
import time

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytestmark = [
    pytest.mark.ros,
]

from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402

from genpolicy_ros.ros.policy_node import PolicyNode  # noqa: E402

import policy_node_harness as H  # noqa: E402  (test/ros is on pytest's pythonpath)

DOMAIN_ID = 72
TIMEOUT_S = 0.3


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    model = H.make_model_dir(tmp_path_factory.mktemp("model") / "flow")
    harness = H.RosHarness(DOMAIN_ID)
    node = PolicyNode(context=harness.context, diagnostics_period_s=0.2, parameter_overrides=[
        Parameter("model_path", value=model), Parameter("control_rate_hz", value=100.0),
        Parameter("backend", value="torch"), Parameter("device", value="cpu"),
        Parameter("observation_timeout_s", value=TIMEOUT_S)])
    robot = harness.start(node)
    assert robot.transition(H.CONFIGURE) and robot.transition(H.ACTIVATE)
    robot.start()
    assert H.wait_for(lambda: robot.n_commands() > 0, 15.0), "no command from clean joint states"
    yield harness
    harness.close()


@pytest.fixture
def robot(env):
    r = env.robot
    yield r
    r.mutate = None
    r.stamp_offset_s = 0.0
    assert H.wait_for(lambda: _moving_again(r), 5.0), "commands did not resume after the fault was removed"


def _moving_again(robot) -> bool:
    t = time.monotonic()
    return H.wait_for(lambda: len(robot.commands_since(t)) >= 5, 1.0)


def _all_commands_finite(robot):
    with robot.lock:
        values = np.array([c[1] for c in robot.commands])  # [N, 2]
    assert np.isfinite(values).all(), "a non-finite command was published"


def _rejected(robot, source="joint_states") -> int:
    diag = robot.latest_diag()
    counts = ast.literal_eval(diag["rejected_by_source"])  # a dict literal written by the node
    return counts.get(source, 0), diag


def _wait_rejected(robot, before: int, n: int, reason: str, timeout: float = 5.0):
    """Wait until >= n more joint states were rejected and the last reason contains ``reason``."""
    seen = {}

    def check():
        count, diag = _rejected(robot)
        seen.update(count=count, diag=diag)
        return count - before >= n and reason in diag["last_rejected_reason"]

    ok = H.wait_for(check, timeout, period=0.0)
    assert ok, (f"{seen['count'] - before} rejections in {timeout} s (need {n}); "
                f"last reason: {seen['diag']['last_rejected_reason']!r}")
    return seen["count"], seen["diag"]


def test_nan_joint_state_is_rejected_and_never_reaches_a_command(robot):
    before, _ = _rejected(robot)

    def nan_every_other(msg, k=[0]):
        k[0] += 1
        if k[0] % 2:
            msg.position[0] = math.nan
        return msg

    robot.mutate = nan_every_other
    _wait_rejected(robot, before, 10, "non-finite position")
    _all_commands_finite(robot)


def test_reordered_and_extra_joints_are_accepted(robot):
    before, _ = _rejected(robot)

    def shuffle(msg):
        names, pos = list(msg.name)[::-1] + ["gripper"], list(msg.position)[::-1] + [0.7]
        return JointState(header=msg.header, name=names, position=pos)

    robot.mutate = shuffle
    t = time.monotonic()

    def moving():  # the policy keeps moving the arm (generation may be slow on a busy machine)
        moved = np.array([c[1] for c in robot.commands_since(t)] or [[0.0, 0.0]])  # [N, 2]
        return np.ptp(moved, axis=0).max() > 0

    assert H.wait_for(moving, 5.0), "the policy stopped with reordered joint states"
    after, diag = _rejected(robot)
    assert after == before, f"reordered joint states were rejected: {diag['last_rejected_reason']}"
    assert "stale" not in diag["_message"], diag["_message"]


def test_missing_joint_and_ragged_messages_are_rejected_then_hold_on_stale(robot):
    before, _ = _rejected(robot)

    def drop_elbow(msg):
        return JointState(header=msg.header, name=[n for n in msg.name if n != "elbow"],
                          position=[p for n, p in zip(msg.name, msg.position) if n != "elbow"])

    def ragged(msg):
        msg.position = list(msg.position)[:-1]  # 4 names, 3 positions
        return msg

    robot.mutate = drop_elbow
    n, _ = _wait_rejected(robot, before, 10, "lacks required joint")
    robot.mutate = ragged
    _wait_rejected(robot, n, 10, "ragged")
    time.sleep(TIMEOUT_S + 0.1)
    held = robot.next_commands(10)  # a stale node keeps publishing its hold
    diag = robot.latest_diag()
    spread = np.ptp(held, axis=0).max()
    assert spread == 0.0, f"held commands moved by {spread}"
    assert diag["_level"] >= 1 and "stale" in diag["_message"], diag["_message"]


def test_stale_stamps_hold_with_warn_then_error(robot):
    robot.stamp_offset_s = -3 * TIMEOUT_S  # every stamp older than the timeout
    time.sleep(TIMEOUT_S + 0.3)
    held = robot.next_commands(10)
    diag = robot.latest_diag()
    assert np.ptp(held, axis=0).max() == 0.0, "stale input must hold"
    assert diag["_level"] == 2 and "observations stale" in diag["_message"], (diag["_level"], diag["_message"])
    robot.stamp_offset_s = -1.5 * TIMEOUT_S  # between 1x and 2x the timeout: WARN
    seen = {}

    def warned():
        seen.update(robot.latest_diag())
        return seen["_level"] == 1 and "observations stale" in seen["_message"]

    assert H.wait_for(warned, 3.0, period=0.0), (seen["_level"], seen["_message"])


def test_zero_future_and_backwards_stamps(robot):
    before, _ = _rejected(robot)
    resets_before = int(robot.latest_diag()["observation_resets"])
    robot.mutate = lambda msg: robot.joint_state(stamp_s=0.0)
    n, _ = _wait_rejected(robot, before, 10, "stamp_zero")
    robot.stamp_offset_s = 5.0
    robot.mutate = None
    _wait_rejected(robot, n, 10, "stamp_future")
    # Backwards (one message behind the stream): dropped as stale, nothing reset.
    robot.stamp_offset_s = 0.0
    time.sleep(0.2)
    n, _ = _rejected(robot)
    robot.publish_joint_state(robot.joint_state(stamp_s=robot.node.get_clock().now().nanoseconds * 1e-9 - 0.2))
    _wait_rejected(robot, n, 1, "stamp_backwards")
    assert int(robot.latest_diag()["observation_resets"]) == resets_before, "one stale message reset the history"


def test_one_stale_joint_state_far_away_never_makes_the_command_jump(robot):
    """Issue 9 §1, the case found over DDS: a healthy robot at 100 Hz and ONE JointState
    stamped an hour ago carrying a far position. Before the fix the next command jumped
    2.39 rad in one tick; now the message is dropped and every step stays within the limits."""
    assert _moving_again(robot)
    resets_before = int(robot.latest_diag()["observation_resets"])
    t0 = time.monotonic()
    stale = robot.joint_state(stamp_s=robot.node.get_clock().now().nanoseconds * 1e-9 - 3600.0)
    stale.position = [2.4, -2.4, *stale.position[2:]]
    robot.publish_joint_state(stale)
    time.sleep(1.0)
    with robot.lock:
        window = [c for c in robot.commands if c[0] >= t0 - 0.1]
    positions = np.array([c[1] for c in window])  # [N, 2]
    steps = np.abs(np.diff(positions, axis=0))
    # 2 rad/s at 100 Hz = 0.02 rad/tick; a tick the Python subscriber saw late may merge two.
    assert len(positions) > 50 and steps.max() <= 2 * 0.02 + 1e-9, f"command jumped {steps.max():.3f} rad"
    diag = robot.latest_diag()
    assert int(diag["observation_resets"]) == resets_before
    assert int(diag["observations_dropped_stale"]) >= 1


def test_a_measured_position_that_disagrees_holds_with_an_error_and_resumes(robot):
    """A robot that reports a position far from what it was commanded (it did not follow,
    or a bogus driver): hold the last command, ERROR on /diagnostics, resume only from
    consistent measurements — never a jump to the reported position."""
    assert _moving_again(robot)
    with robot.lock:
        real = robot.position.copy()
    robot.mutate = lambda msg: _with_arm(msg, real + np.array([0.8, -0.8]))
    seen = {}

    def errored():
        seen.update(robot.latest_diag())
        return seen["_level"] == 2 and "disagrees" in seen["_message"]

    assert H.wait_for(errored, 5.0, period=0.0), (seen.get("_level"), seen.get("_message"))
    held = robot.next_commands(20)
    assert np.abs(np.diff(held, axis=0)).max() <= 0.02 + 1e-9, "a tracking hold must not jump"
    assert np.abs(held[-1] - (real + np.array([0.8, -0.8]))).min() > 0.5, "moved to the bogus position"
    robot.mutate = None  # the robot reports where it is again: consistent, resumes


def _with_arm(msg, arm):
    msg.position = [*np.asarray(arm, float).tolist(), *list(msg.position)[2:]]
    return msg


def test_unstamped_joint_states_are_used_with_receive_time(robot, env):
    """Issue 9 §2: rejected by default with advice; unstamped_inputs:=receive_time runs."""
    before, _ = _rejected(robot)
    robot.mutate = lambda msg: robot.joint_state(stamp_s=0.0)
    _, diag = _wait_rejected(robot, before, 10, "unstamped_inputs:=receive_time")
    assert env.node.set_parameters([Parameter("unstamped_inputs", value="receive_time")])[0].successful
    try:
        assert _moving_again(robot), "no commands from unstamped joint states with receive_time"
        n, _ = _rejected(robot)
        time.sleep(0.5)
        assert _rejected(robot)[0] == n, "unstamped messages still rejected under receive_time"
    finally:
        env.node.set_parameters([Parameter("unstamped_inputs", value="reject")])


def test_pause_latches_a_hold_until_resume(robot):
    assert _moving_again(robot)
    response = robot.trigger("pause")
    assert response.success, response.message
    time.sleep(0.15)
    held = robot.next_commands(20)
    assert np.ptp(held, axis=0).max() == 0.0, "pause must hold (publishing the hold)"
    diag = robot.latest_diag()
    # An operator's pause is reported, not warned about (other warnings, e.g. CPU load, may be).
    assert diag["paused"] == "True" and "holding" not in diag["_message"], (diag["paused"], diag["_message"])
    assert "paused" in diag["_message"], diag["_message"]
    response = robot.trigger("resume")
    assert response.success, response.message
    t = time.monotonic()

    def moving():
        after = np.array([c[1] for c in robot.commands_since(t)] or [[0.0, 0.0]])  # [N, 2]
        return np.ptp(after, axis=0).max() > 0.0

    assert H.wait_for(moving, 3.0), "commands did not move again after resume"
    assert not robot.trigger("resume").success, "resume without a pause must say so"


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def _garbage(rng, k: int) -> JointState:
    kind = k % 6
    names = ["shoulder", "elbow", "target_x", "target_y"]
    msg = JointState()
    stamp = float(rng.choice([0.0, 1e9, 1.0, time.time(), time.time() + 100.0]))
    msg.header.stamp.sec = int(stamp)
    if kind == 0:
        msg.name, msg.position = names, [float(v) for v in rng.normal(size=3)]  # ragged
    elif kind == 1:
        msg.name, msg.position = names, [math.nan, math.inf, -math.inf, 1e308]
    elif kind == 2:
        msg.name = ["".join(rng.choice(list("abcxyz"), size=5)) for _ in range(int(rng.integers(0, 40)))]
        msg.position = [float(v) for v in rng.normal(size=len(msg.name)) * 1e6]
    elif kind == 3:
        msg.name, msg.position = names + names, [0.0] * 8  # duplicate names
    elif kind == 4:
        msg.name, msg.position, msg.velocity = names, [0.0] * 4, [1.0]  # ragged velocity
    else:
        msg.name, msg.position = names, [float(v) for v in rng.normal(size=4) * 1e3]  # huge but finite
    return msg


def test_burst_of_malformed_messages_no_crash_no_nonfinite_memory_flat(robot):
    rng = np.random.default_rng(0)
    pub = robot.node.create_publisher(JointState, "joint_states", H.sensor_qos())
    for k in range(1000):  # warm-up: first-time allocations are not a leak
        pub.publish(_garbage(rng, k))
    time.sleep(0.5)
    rss0 = _rss_kib()
    t = time.monotonic()
    for k in range(10_000):
        pub.publish(_garbage(rng, k))
    burst_s = time.monotonic() - t
    time.sleep(0.5)
    rss1 = _rss_kib()
    robot.node.destroy_publisher(pub)
    _all_commands_finite(robot)
    assert robot.trigger("pause").success, "node unresponsive after the burst"
    assert robot.trigger("resume").success
    growth_mib = (rss1 - rss0) / 1024
    print(f"burst of 10000 malformed JointState in {burst_s:.2f} s; RSS {rss0 / 1024:.1f} -> {rss1 / 1024:.1f} MiB")
    assert growth_mib < 20.0, f"RSS grew by {growth_mib:.1f} MiB over 10000 malformed messages"


def test_sim_time_clock_stop_is_caught_by_the_steady_watchdog(env, robot):
    """Bag replay: ROS time from /clock; when /clock and the data stop, the node holds and
    reports stale inputs although ROS time is frozen (reliability row 14)."""
    from rosgraph_msgs.msg import Clock

    clock_pub = robot.node.create_publisher(Clock, "/clock", 10)
    sim = {"t": 1000.0, "run": True}

    def tick(_):
        if not sim["run"]:
            return
        sim["t"] += 0.01
        stamp_msg = robot.joint_state(stamp_s=sim["t"])
        clock_pub.publish(Clock(clock=stamp_msg.header.stamp))
        robot.publish_joint_state(stamp_msg)

    robot.feeding.clear()
    feeder = H.RateLoop(100.0, tick, name="sim_clock")
    feeder.start()
    try:
        assert _set_use_sim_time(robot, True)
        node_clock = env.node.get_clock()
        assert H.wait_for(lambda: abs(node_clock.now().nanoseconds * 1e-9 - sim["t"]) < 0.5, 3.0), \
            "node is not on /clock"
        t = time.monotonic()
        assert H.wait_for(lambda: np.ptp(np.array([c[1] for c in robot.commands_since(t)] or [[0, 0]]),
                                         axis=0).max() > 0, 5.0), "no motion on simulated time"
        sim["run"] = False  # the bag pauses: no /clock, no data
        time.sleep(TIMEOUT_S + 0.3)
        held = robot.next_commands(10)
        diag = robot.latest_diag()
        assert np.ptp(held, axis=0).max() == 0.0, "no hold after /clock stopped"
        assert diag["_level"] >= 1 and "stale" in diag["_message"], diag["_message"]
    finally:
        feeder.stop()
        robot.node.destroy_publisher(clock_pub)
        assert _set_use_sim_time(robot, False)
        robot.feeding.set()


def _set_use_sim_time(robot, value: bool) -> bool:
    return robot.set_params(use_sim_time=value)[0].successful
