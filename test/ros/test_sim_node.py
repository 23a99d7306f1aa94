"""The MuJoCo sim node over real rclpy/DDS: rates, commands, rejection, reset, expert success.

Every test runs in its own rclpy Context on its own ROS_DOMAIN_ID. The sim publishes
/clock (simulated time), so stamp-based checks are exact whatever the machine's load.
"""
import itertools
import json
import os
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from genpolicy_ros.sim.reach_env import ensure_headless_gl  # noqa: E402

ensure_headless_gl()  # before the first `import mujoco`
pytest.importorskip("mujoco")

from builtin_interfaces.msg import Duration, Time  # noqa: E402
from geometry_msgs.msg import PointStamped  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image, JointState  # noqa: E402
from std_msgs.msg import Float64MultiArray, String  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint  # noqa: E402

from genpolicy_ros.ros.conversions import compressed_image_to_array, image_to_array  # noqa: E402
from genpolicy_ros.ros.qos import command_qos  # noqa: E402
from genpolicy_ros.sim.node import ExpertDriver, SimNode, parse_joint_trajectory  # noqa: E402
from genpolicy_ros.sim.reach_env import obstacle_task  # noqa: E402

pytestmark = pytest.mark.ros
_DOMAINS = itertools.count()
NS = 1_000_000_000


def _domain_id() -> int:
    return 100 + (os.getpid() + 37 * next(_DOMAINS)) % 100


class Harness:
    """A sim node, a probe node recording what the sim publishes, one executor."""

    def __init__(self, ctx, **params):
        overrides = [Parameter(k, value=v) for k, v in params.items()]
        self.sim = SimNode(context=ctx, start=False, parameter_overrides=overrides)
        self.probe = Node("probe", context=ctx)
        self.states, self.images, self.compressed, self.clocks, self.episodes = [], [], [], [], []
        self.targets = []
        qos = command_qos(depth=100)
        self.probe.create_subscription(JointState, "joint_states", self.states.append, qos)
        self.probe.create_subscription(PointStamped, "target", self.targets.append, qos)
        self.probe.create_subscription(Image, "camera/image_raw", self.images.append, qos)
        self.probe.create_subscription(CompressedImage, "camera/image_raw/compressed", self.compressed.append, qos)
        self.probe.create_subscription(Clock, "/clock", self.clocks.append, qos)
        self.probe.create_subscription(String, "/genpolicy_sim/episode",
                                       lambda m: self.episodes.append(json.loads(m.data)), qos)
        self.forward = self.probe.create_publisher(Float64MultiArray, "forward_position_controller/commands",
                                                   command_qos())
        self.trajectory = self.probe.create_publisher(JointTrajectory, "joint_trajectory_controller/joint_trajectory",
                                                      command_qos())
        self.executor = SingleThreadedExecutor(context=ctx)
        self.executor.add_node(self.sim)
        self.executor.add_node(self.probe)
        self.spin_until(lambda: self.probe.count_subscribers("joint_trajectory_controller/joint_trajectory") > 0
                        and self.probe.count_publishers("joint_states") > 0, what="discovery")
        time.sleep(0.2)
        self.sim.start()

    def spin_until(self, predicate, timeout_s: float = 15.0, what: str = "condition"):
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            self.executor.spin_once(timeout_sec=0.02)

    def spin_sim_time(self, seconds: float):
        """Spin until the sim has published joint states `seconds` of sim time further on."""
        self.spin_until(lambda: bool(self.states), what="first joint state")
        end = _ns(self.states[-1].header.stamp) + int(seconds * NS)
        self.spin_until(lambda: _ns(self.states[-1].header.stamp) >= end, what=f"{seconds} s of sim time")

    def arm(self) -> np.ndarray:
        return np.array(self.states[-1].position[:2])

    def close(self):
        self.executor.shutdown()
        self.sim.destroy_node()
        self.probe.destroy_node()


@pytest.fixture
def ctx():
    context = Context()
    rclpy.init(context=context, domain_id=_domain_id())
    yield context
    rclpy.try_shutdown(context=context)


@pytest.fixture
def harness_factory(ctx):
    made = []

    def make(**params):
        # These tests read the target from the JointState layout the sim published before the
        # inputs had topics of their own; the default (False) is tested on its own below.
        params.setdefault("legacy_target_joints", True)
        h = Harness(ctx, **params)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


def _ns(stamp) -> int:
    return int(stamp.sec) * NS + int(stamp.nanosec)


def _traj(names, points, stamp_ns=0):
    msg = JointTrajectory(joint_names=list(names))
    msg.header.stamp = Time(sec=stamp_ns // NS, nanosec=stamp_ns % NS)
    for positions, t in points:
        msg.points.append(JointTrajectoryPoint(
            positions=list(positions), time_from_start=Duration(sec=int(t), nanosec=int(round((t % 1) * 1e9)))))
    return msg


def test_publishes_joint_states_images_and_clock_at_configured_rates(harness_factory):
    h = harness_factory(publish_clock=True, rate_factor=2.0, physics_rate_hz=100.0, camera_rate_hz=10.0,
                        compressed_format="png", episode_s=30.0)
    t0 = time.monotonic()
    h.spin_sim_time(1.0)
    wall = time.monotonic() - t0
    h.spin_until(lambda: len(h.images) >= 8 and len(h.compressed) >= 8, what="camera frames")
    stamps = np.array([_ns(m.header.stamp) for m in h.states])  # [N] ns
    steps = np.diff(stamps)
    # Stamps lie on the 10 ms physics grid; best-effort QoS may drop a message under load.
    assert np.all(steps % 10_000_000 == 0) and np.all(steps > 0), \
        f"joint_states stamps off the 10 ms grid: {np.unique(steps)}"
    assert np.mean(steps == 10_000_000) >= 0.9, f"joint_states not every 10 ms: {np.unique(steps, return_counts=True)}"
    assert list(h.states[0].name) == ["shoulder", "elbow", "target_x", "target_y"]
    assert len(h.states[0].position) == 4 and len(h.states[0].velocity) == 4
    cam = np.array([_ns(m.header.stamp) for m in h.images])
    assert np.all(np.diff(cam) % 100_000_000 == 0) and np.all(np.diff(cam) > 0), \
        f"camera stamps off the 100 ms grid: {np.diff(cam)}"
    assert np.mean(np.diff(cam) == 100_000_000) >= 0.7, f"camera frames not every 100 ms: {np.diff(cam)}"
    assert set(cam) <= set(stamps), "each frame carries the stamp of a joint_states tick"
    clocks = {_ns(m.clock) for m in h.clocks}
    announced = {int(t) for t in stamps if t <= max(clocks)}  # the newest /clock may still be in flight
    assert len(announced) >= len(stamps) - 5 and announced <= clocks, "joint_states stamps not on /clock"
    sim_s = (stamps[-1] - stamps[0]) / NS
    assert sim_s <= 2.0 * wall * 1.05 + 0.1, f"sim ran faster than rate_factor 2: {sim_s:.2f} sim s in {wall:.2f} s"
    # Raw and PNG frames of the same tick are the same picture.
    raw, _ = image_to_array(h.images[2])
    by_stamp = {_ns(m.header.stamp): m for m in h.compressed}
    png, reason = compressed_image_to_array(by_stamp[_ns(h.images[2].header.stamp)])
    assert raw is not None and raw.shape == (64, 64, 3) and h.images[2].encoding == "rgb8"
    assert png is not None, reason
    np.testing.assert_array_equal(raw, png)
    assert raw.std() > 5, "the rendered frame is not a blank image"


def test_forward_command_moves_the_arm_and_bad_commands_are_rejected(harness_factory):
    h = harness_factory(publish_clock=True, rate_factor=3.0, camera_rate_hz=0.0, episode_s=60.0)
    h.spin_sim_time(0.1)
    q0 = h.arm()
    bad_forward = [[float("nan"), 0.0], [0.1, 0.2, 0.3], [], [float("inf"), 1.0]]
    for data in bad_forward:
        h.forward.publish(Float64MultiArray(data=data))
    bad_traj = [
        _traj(["shoulder", "elbow", "wrist"], [([0.5, 0.5, 0.5], 0.5)]),  # unknown joint
        _traj(["shoulder"], [([0.5], 0.5)]),  # partial goal
        _traj(["shoulder", "elbow"], [([0.5], 0.5)]),  # ragged point
        _traj(["shoulder", "elbow"], [([0.5, 0.5], 0.5), ([0.6, 0.6], 0.5)]),  # non-monotonic time
        _traj(["shoulder", "elbow"], [([float("nan"), 0.5], 0.5)]),  # NaN
        _traj(["shoulder", "shoulder"], [([0.5, 0.5], 0.5)]),  # duplicate names
    ]
    for msg in bad_traj:
        h.trajectory.publish(msg)
    expected = len(bad_forward) + len(bad_traj)
    h.spin_until(lambda: h.sim.stats["rejected_commands"] >= expected, what="rejections")
    h.spin_sim_time(0.5)
    drift = float(np.abs(h.arm() - q0).max())
    assert h.sim.stats["rejected_commands"] == expected and h.sim.stats["accepted_commands"] == 0, h.sim.stats
    assert drift < 1e-3, f"the arm moved {drift:.4f} rad after rejected commands"

    goal = q0 + np.array([0.6, -0.8])
    h.forward.publish(Float64MultiArray(data=goal.tolist()))
    h.spin_until(lambda: h.sim.stats["accepted_commands"] == 1, what="accepted command")
    h.spin_sim_time(0.3)
    partway = float(np.abs(h.arm() - goal).max())
    h.spin_sim_time(2.0)
    final = float(np.abs(h.arm() - goal).max())
    start = float(np.abs(q0 - goal).max())
    print("forward command errors", start, partway, final)
    assert partway < start, f"no progress towards the command: {start:.3f} -> {partway:.3f} rad"
    assert final < 0.02, f"the arm did not reach the held command: error {final:.4f} rad (start {start:.3f})"


def test_joint_trajectory_is_interpolated_and_followed(harness_factory):
    h = harness_factory(publish_clock=True, rate_factor=3.0, camera_rate_hz=0.0, episode_s=60.0)
    h.spin_sim_time(0.1)
    q0, t_last = h.arm(), _ns(h.states[-1].header.stamp)
    start = t_last + 300_000_000  # starts 0.3 s (sim) in the future
    p1, p2 = q0 + np.array([0.3, 0.4]), q0 + np.array([0.6, 0.8])
    # Joints in a different order than the sim's: matched by name.
    h.trajectory.publish(_traj(["elbow", "shoulder"], [([p1[1], p1[0]], 0.5), ([p2[1], p2[0]], 1.0)], start))
    h.spin_until(lambda: h.sim.stats["accepted_commands"] == 1, what="trajectory accepted")
    h.spin_sim_time(2.5)
    by_stamp = {_ns(m.header.stamp): np.array(m.position[:2]) for m in h.states}
    before = by_stamp[start - 10_000_000]
    assert np.abs(before - q0).max() < 1e-3, f"moved before the trajectory's start stamp: {before - q0}"
    mid = by_stamp[start + 500_000_000]
    # Linear interpolation q0 -> p1 over 0.5 s: the position servo lags, but is well on its way.
    progress = (mid - q0) / (p1 - q0)
    print("trajectory progress at the first waypoint", progress)
    assert np.all((progress > 0.6) & (progress < 1.0)), f"at the first waypoint's time: progress {progress}"
    end = by_stamp[max(by_stamp)]
    assert np.abs(end - p2).max() < 0.02, f"did not settle on the last point: {end} vs {p2}"
    # Monotonic approach along the way (linear segments, critically damped servo).
    shoulder = np.array([by_stamp[k][0] for k in sorted(by_stamp) if start <= k <= start + NS])
    assert np.all(np.diff(shoulder) > -1e-4), "shoulder went backwards while following the ramp"


def test_reset_service_starts_a_new_episode(harness_factory):
    h = harness_factory(publish_clock=True, rate_factor=3.0, camera_rate_hz=0.0, episode_s=60.0, seed=5)
    h.spin_sim_time(0.2)
    target0 = np.array(h.states[-1].position[2:])
    client = h.probe.create_client(Trigger, "/genpolicy_sim/reset")
    h.spin_until(client.service_is_ready, what="reset service")
    future = client.call_async(Trigger.Request())
    h.spin_until(future.done, what="reset response")
    assert future.result().success and "episode 1" in future.result().message
    h.spin_until(lambda: h.episodes, what="status of the cut episode")
    status = h.episodes[0]
    assert status["episode"] == 0 and status["seed"] == 5 * 100_003 and status["completed"] is False
    h.spin_sim_time(0.1)
    target1 = np.array(h.states[-1].position[2:])
    assert np.abs(target1 - target0).max() > 1e-3, "the target did not change: no new episode"
    # The new episode's first state is the stretched arm pointing at the new target.
    first = next(m for m in h.states if _ns(m.header.stamp) > status["end_ns"])
    heading = np.arctan2(first.position[3], first.position[2])
    assert abs(first.position[0] - heading) < 0.25 and abs(first.position[1]) < 0.25, first.position
    # A trajectory stamped in the previous episode (still running on, 10 s long) is refused.
    rejected = h.sim.stats["rejected_commands"]
    h.trajectory.publish(_traj(["shoulder", "elbow"], [([1.0, 1.0], 10.0)], status["end_ns"]))
    h.spin_until(lambda: h.sim.stats["rejected_commands"] == rejected + 1, what="stale trajectory rejected")
    assert h.sim.stats["accepted_commands"] == 0


def test_episode_status_reports_success_when_the_expert_drives(ctx, harness_factory):
    h = harness_factory(publish_clock=True, rate_factor=4.0, camera_rate_hz=0.0, episode_s=2.5, max_episodes=2)
    driver = ExpertDriver(context=ctx, seed=3, command_rate_hz=20.0)
    h.executor.add_node(driver)
    try:
        h.spin_until(lambda: len(h.episodes) >= 2, timeout_s=30.0, what="two episodes")
    finally:
        h.executor.remove_node(driver)
        driver.destroy_node()
    for status in h.episodes:
        assert status["completed"] and status["success"], status
        assert status["final_distance"] < 0.02, status
        assert status["end_ns"] - status["start_ns"] == 2_500_000_000, status
    assert [s["mode"] for s in h.episodes] == driver.modes[:2], (h.episodes, driver.modes)
    assert h.episodes[1]["seed"] == h.episodes[0]["seed"] + 1
    # (a trajectory delivered very late on a loaded machine is rejected, as the real controller would)
    assert h.sim.stats["rejected_commands"] <= 0.1 * h.sim.stats["accepted_commands"], h.sim.stats


def test_obstacle_variant_fails_an_arm_that_swings_through_the_post(harness_factory):
    """With ``obstacle:=true`` the arm starts beside the target; swinging the stretched arm
    to the target's heading (what an averaging policy does) sweeps the fingertip through
    the post: the episode reports a collision and fails, although nothing stops the arm."""
    h = harness_factory(publish_clock=True, rate_factor=3.0, camera_rate_hz=0.0, episode_s=1.5,
                        max_episodes=1, obstacle=True)
    h.spin_sim_time(0.05)
    first = h.states[0]
    heading = np.arctan2(first.position[3], first.position[2])
    offset = obstacle_task().start_offset_rad
    assert first.position[0] - heading == pytest.approx(offset, abs=0.1), "start beside the target"
    assert abs(first.position[1]) < 0.25, "stretched arm"
    h.forward.publish(Float64MultiArray(data=[float(heading), 0.0]))
    h.spin_until(lambda: h.episodes, timeout_s=30.0, what="the episode's status")
    status = h.episodes[0]
    assert status["collided"] is True and status["success"] is False, status


def test_parse_joint_trajectory_reorders_by_name():
    parsed, reason = parse_joint_trajectory(_traj(["elbow", "shoulder"], [([1.0, 2.0], 0.1), ([3.0, 4.0], 0.2)]))
    assert parsed is not None, reason
    tfs, positions = parsed
    assert tfs.tolist() == [100_000_000, 200_000_000]
    np.testing.assert_array_equal(positions, [[2.0, 1.0], [4.0, 3.0]])
    none, reason = parse_joint_trajectory(_traj(["shoulder", "elbow"], []))
    assert none is None and "no points" in reason


def test_without_clock_stamps_are_ros_time_and_no_clock_is_published(harness_factory):
    h = harness_factory(publish_clock=False, camera_rate_hz=0.0, episode_s=60.0)
    before = time.time_ns()
    h.spin_until(lambda: len(h.states) >= 20, what="joint states")
    after = time.time_ns()
    stamps = np.array([_ns(m.header.stamp) for m in h.states])
    assert np.all(np.diff(stamps) > 0), "stamps not increasing"
    assert before - NS < stamps[0] and stamps[-1] <= after, "stamps are not the node's (system) ROS time"
    assert h.clocks == [], "published /clock although publish_clock is false"
    # stamp 0 = start on receipt: the arm moves towards the single point.
    q0 = h.arm()
    goal = q0 + np.array([0.3, 0.3])
    h.trajectory.publish(_traj(["shoulder", "elbow"], [(goal.tolist(), 0.2)]))
    h.spin_until(lambda: h.sim.stats["accepted_commands"] == 1, what="trajectory accepted")
    h.spin_until(lambda: np.abs(h.arm() - goal).max() < 0.05, what="arm near the goal")


@pytest.mark.parametrize("bad, word", [
    ({"physics_rate_hz": 300.0}, "divide"),
    ({"camera_rate_hz": 200.0}, "camera_rate_hz"),
    ({"compressed_format": "bmp"}, "compressed_format"),
    ({"rate_factor": 0.0}, "rate_factor"),
    ({"episode_s": 0.01}, "episode_s"),
    ({"image_height": 8}, "image_size"),
])
def test_sim_params_reject_bad_values(bad, word):
    from genpolicy_ros.sim.node import SimParams

    with pytest.raises(ValueError, match=word):
        SimParams(**bad)


def test_out_of_range_parameter_override_fails_at_construction(ctx):
    from rclpy.exceptions import InvalidParameterValueException

    with pytest.raises(InvalidParameterValueException):
        SimNode(context=ctx, start=False, parameter_overrides=[Parameter("rate_factor", value=1000.0)])


def test_the_target_is_a_point_input_with_the_joint_state_stamp(harness_factory):
    """The target (a non-joint input) is published as PointStamped on `target`, once per tick
    with the joint state's stamp; with legacy_target_joints also inside JointState."""
    h = harness_factory(publish_clock=True, rate_factor=3.0, camera_rate_hz=0.0, episode_s=1.0, max_episodes=1)
    h.spin_until(lambda: h.episodes, timeout_s=30.0, what="the episode's status")
    h.spin_sim_time(0.05)
    by_stamp = {_ns(m.header.stamp): m for m in h.states}
    targets = {_ns(m.header.stamp): m for m in h.targets}
    common = set(by_stamp) & set(targets)
    assert len(common) >= 0.9 * len(by_stamp), "the target is not published with every joint state"
    for stamp in sorted(common)[:50]:
        js, point = by_stamp[stamp], targets[stamp]
        assert list(js.name) == ["shoulder", "elbow", "target_x", "target_y"]
        assert (point.point.x, point.point.y, point.point.z) == (js.position[2], js.position[3], 0.0)
    status = h.episodes[0]
    assert status["task"] == "reach" and status["target"] == pytest.approx(list(h.states[0].position[2:]))
    assert {"success", "final_distance", "mode"} <= set(status)


def test_legacy_target_joints_are_off_by_default():
    from genpolicy_ros.sim.node import SimParams

    assert SimParams().legacy_target_joints is False


def test_without_legacy_target_joints_joint_state_holds_the_robot_joints_only(harness_factory):
    h = harness_factory(publish_clock=True, rate_factor=3.0, camera_rate_hz=0.0, episode_s=60.0,
                        legacy_target_joints=False)
    h.spin_sim_time(0.1)
    h.spin_until(lambda: h.targets, what="a target")
    assert list(h.states[-1].name) == ["shoulder", "elbow"] and len(h.states[-1].velocity) == 2


def test_task_parameter_picks_the_task_and_obstacle_is_its_older_spelling(ctx):
    from rclpy.exceptions import ParameterException

    from genpolicy_ros.sim.node import SimParams

    assert SimParams(task="reach_obstacle").task_spec().name == "reach_obstacle"
    assert SimParams(obstacle=True).task_spec().name == "reach_obstacle"
    assert SimParams().task_spec().name == "reach" and SimParams().episode_length_s == 3.0
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        SimParams(task="nope")
    node = SimNode(context=ctx, start=False, parameter_overrides=[Parameter("task", value="reach_obstacle")])
    try:
        assert node.task.name == "reach_obstacle" and node.params.task_spec().name == "reach_obstacle"
    finally:
        node.destroy_node()
    with pytest.raises((ValueError, ParameterException)):
        SimNode(context=ctx, start=False, parameter_overrides=[Parameter("task", value="nope")])


def test_episode_json_values_are_plain_and_finite_or_null():
    from genpolicy_ros.sim.node import _json_value

    doc = _json_value({"success": np.bool_(True), "min_clearance": float("inf"), "target": np.array([0.1, 0.2]),
                       "stages": {"grasped": np.bool_(False), "t": (np.int64(3), float("nan"))}})
    assert json.loads(json.dumps(doc, allow_nan=False)) == {
        "success": True, "min_clearance": None, "target": [0.1, 0.2], "stages": {"grasped": False, "t": [3, None]}}
