"""rosbag2 (MCAP) recording, reading and conversion to episodes (data/bag_io.py, data/bags.py,
data/bag_mapping.py, sim/cli_collect.py)."""
import itertools
import json
import os
import time

import numpy as np
import pytest
import yaml

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("rosbags")

from builtin_interfaces.msg import Duration, Time  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from sensor_msgs.msg import Image, JointState  # noqa: E402
from std_msgs.msg import Float64MultiArray, String  # noqa: E402
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint  # noqa: E402

from genpolicy_ros.data.bag_mapping import bags_to_dataset_dir  # noqa: E402
from genpolicy_ros.data.bags import (  # noqa: E402
    BagRecorder,
    BagWriter,
    bag_to_episodes,
    read_bag_messages,
)
from genpolicy_ros.data.episodes import EpisodeDataset  # noqa: E402
from genpolicy_ros.ros.qos import command_qos  # noqa: E402

NS = 1_000_000_000
_DOMAINS = itertools.count()


def _domain_id() -> int:
    return 100 + (os.getpid() + 53 + 41 * next(_DOMAINS)) % 100


def _time(ns: int) -> Time:
    return Time(sec=ns // NS, nanosec=ns % NS)


def _ns(stamp) -> int:
    return int(stamp.sec) * NS + int(stamp.nanosec)


# --------------------------------------------------------------------------- live recording
def test_recorder_round_trip_field_by_field(tmp_path):
    ctx = Context()
    rclpy.init(context=ctx, domain_id=_domain_id())
    try:
        talker = Node("talker", context=ctx)
        rec_node = Node("recorder", context=ctx)
        bag_path = tmp_path / "live"
        recorder = BagRecorder(rec_node, bag_path, {"joint_states": JointState, "camera/image_raw": Image,
                                                    "cmd": Float64MultiArray, "traj": JointTrajectory})
        qos = command_qos(depth=50)
        pubs = {t: talker.create_publisher(c, t, qos) for t, c in
                [("joint_states", JointState), ("camera/image_raw", Image), ("cmd", Float64MultiArray),
                 ("traj", JointTrajectory)]}
        executor = SingleThreadedExecutor(context=ctx)
        executor.add_node(talker)
        executor.add_node(rec_node)
        deadline = time.monotonic() + 10
        while sum(p.get_subscription_count() for p in pubs.values()) < 4:
            assert time.monotonic() < deadline, "no discovery"
            executor.spin_once(timeout_sec=0.02)
        time.sleep(0.2)

        rng = np.random.default_rng(0)
        sent = {"/joint_states": [], "/camera/image_raw": [], "/cmd": [], "/traj": []}
        t_before = rec_node.get_clock().now().nanoseconds
        for i in range(5):
            js = JointState(name=["shoulder", "elbow"], position=rng.normal(size=2).tolist(),
                            velocity=[0.1 * i, -0.1 * i])
            js.header.stamp = _time(1_700_000_000 * NS + 123_456_789 + i * 10_000_000)
            js.header.frame_id = f"base_{i}"
            img = Image(height=2, width=3, encoding="rgb8", step=9, data=bytes(range(i, i + 18)))
            img.header.stamp = _time(42 * NS + i)
            cmd = Float64MultiArray(data=[float(i), -float(i), 0.5])
            traj = JointTrajectory(joint_names=["elbow", "shoulder"])
            traj.header.stamp = _time(7 * NS + i)
            traj.points = [JointTrajectoryPoint(positions=[0.1 * i, 0.2],
                                                time_from_start=Duration(sec=0, nanosec=50_000_000)),
                           JointTrajectoryPoint(positions=[0.3, 0.4 * i], time_from_start=Duration(sec=1, nanosec=5))]
            for topic, msg in (("/joint_states", js), ("/camera/image_raw", img), ("/cmd", cmd), ("/traj", traj)):
                pubs[topic.lstrip("/")].publish(msg)
                sent[topic].append(msg)
        deadline = time.monotonic() + 10
        while sum(recorder.counts.values()) < 20:
            assert time.monotonic() < deadline, f"recorded only {recorder.counts}"
            executor.spin_once(timeout_sec=0.02)
        t_after = rec_node.get_clock().now().nanoseconds
        recorder.close()
        executor.shutdown()
        talker.destroy_node()
        rec_node.destroy_node()
    finally:
        rclpy.try_shutdown(context=ctx)

    got = {t: [] for t in sent}
    receive_times = []
    for topic, msgtype, t_ns, msg in read_bag_messages(bag_path):
        got[topic].append((msgtype, msg))
        receive_times.append(t_ns)
    assert all(t_before <= t <= t_after for t in receive_times), "log time is not the receive time"
    assert receive_times == sorted(receive_times)
    for a, (msgtype, b) in zip(sent["/joint_states"], got["/joint_states"]):
        assert msgtype == "sensor_msgs/msg/JointState"
        assert _ns(b.header.stamp) == _ns(a.header.stamp) and b.header.frame_id == a.header.frame_id
        assert list(b.name) == list(a.name)
        np.testing.assert_array_equal(b.position, a.position)
        np.testing.assert_array_equal(b.velocity, a.velocity)
        assert len(b.effort) == 0
    for a, (msgtype, b) in zip(sent["/camera/image_raw"], got["/camera/image_raw"]):
        assert msgtype == "sensor_msgs/msg/Image" and _ns(b.header.stamp) == _ns(a.header.stamp)
        assert (b.height, b.width, b.encoding, b.step) == (2, 3, "rgb8", 9)
        assert bytes(b.data) == bytes(a.data)
    for a, (msgtype, b) in zip(sent["/cmd"], got["/cmd"]):
        assert msgtype == "std_msgs/msg/Float64MultiArray"
        np.testing.assert_array_equal(b.data, a.data)
    for a, (msgtype, b) in zip(sent["/traj"], got["/traj"]):
        assert msgtype == "trajectory_msgs/msg/JointTrajectory" and _ns(b.header.stamp) == _ns(a.header.stamp)
        assert list(b.joint_names) == ["elbow", "shoulder"]
        for pa, pb in zip(a.points, b.points):
            np.testing.assert_array_equal(pb.positions, pa.positions)
            assert (pb.time_from_start.sec, pb.time_from_start.nanosec) == (pa.time_from_start.sec,
                                                                           pa.time_from_start.nanosec)
    assert {t: len(v) for t, v in got.items()} == {t: 5 for t in sent}


def test_written_bag_is_a_rosbag2_mcap_that_rosbags_opens(tmp_path):
    from rosbags.rosbag2 import Reader

    path = tmp_path / "bag"
    with BagWriter(path) as bag:
        bag.add_topic("/joint_states", JointState)
        bag.add_topic("/status", String)
        bag.set_custom_data("genpolicy_ros.test", json.dumps({"k": 1}))
        for i in range(3):
            bag.write("/joint_states", JointState(name=["a"], position=[float(i)]), 1_000 + i)
        bag.write("/status", String(data="done"), 2_000)
    meta = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["storage_identifier"] == "mcap" and meta["version"] == 8
    (data_file,) = meta["relative_file_paths"]
    assert data_file.endswith(".mcap")
    assert (path / data_file).read_bytes()[:8] == b"\x89MCAP0\r\n", "not an MCAP file"
    counts = {t["topic_metadata"]["name"]: (t["topic_metadata"]["type"], t["message_count"])
              for t in meta["topics_with_message_count"]}
    assert counts == {"/joint_states": ("sensor_msgs/msg/JointState", 3), "/status": ("std_msgs/msg/String", 1)}
    assert meta["message_count"] == 4 and meta["starting_time"]["nanoseconds_since_epoch"] == 1_000
    assert meta["topics_with_message_count"][0]["topic_metadata"]["type_description_hash"].startswith("RIHS01_")
    assert json.loads(meta["custom_data"]["genpolicy_ros.test"]) == {"k": 1}
    with Reader(path) as reader:
        assert reader.message_count == 4 and reader.duration == 1_001
        assert sorted(c.topic for c in reader.connections) == ["/joint_states", "/status"]
    assert [m.data for *_, m in read_bag_messages(path, ["/status"])] == ["done"]
    assert list(read_bag_messages(path, ["/nothing"])) == []


# --------------------------------------------------------------------------- conversion
def _state(stamp_ns, shoulder, elbow, target=(0.5, 0.25)):
    # Joints deliberately not in the model's order: mapped by name.
    msg = JointState(name=["target_y", "elbow", "shoulder", "target_x"],
                     position=[target[1], elbow, shoulder, target[0]])
    msg.header.stamp = _time(stamp_ns)
    return msg


def _command(stamp_ns, shoulder, elbow):
    msg = JointTrajectory(joint_names=["elbow", "shoulder"])
    msg.header.stamp = _time(stamp_ns)
    msg.points = [JointTrajectoryPoint(positions=[elbow, shoulder], time_from_start=Duration(nanosec=50_000_000)),
                  JointTrajectoryPoint(positions=[99.0, 99.0], time_from_start=Duration(nanosec=100_000_000))]
    return msg


def _status(episode, start_ns, end_ns, completed=True):
    return String(data=json.dumps({"episode": episode, "start_ns": start_ns, "end_ns": end_ns,
                                   "completed": completed, "success": True}))


def test_bag_to_episodes_aligns_by_header_stamps_despite_jittered_arrival(tmp_path):
    """States every 20 ms, commands at irregular stamps, grid dt = 100 ms; rows by hand."""
    T = 10 * NS
    msgs = []  # (topic, msg, receive time)
    # Episode 0: window [10.00, 10.30]. State i at 10.00 + 0.02 i: shoulder = i, elbow = 10 + i.
    for i in range(16):
        msgs.append(("/joint_states", _state(T + i * 20_000_000, float(i), 10.0 + i), T + i * 20_000_000 + 3_000_000))
    # A command from before the episode must never be used inside it.
    msgs.append(("/joint_trajectory_controller/joint_trajectory", _command(T - 10_000_000, -1.0, -1.0), T - 9_000_000))
    for j, ms in enumerate([0, 70, 140, 210, 280]):  # commands at 10.00, 10.07, 10.14, 10.21, 10.28
        stamp = T + ms * 1_000_000
        msgs.append(("/joint_trajectory_controller/joint_trajectory", _command(stamp, 100.0 + j, 200.0 + j),
                     stamp + 1_000_000))
    msgs.append(("/genpolicy_sim/episode", _status(0, T, T + 300_000_000), T + 305_000_000))
    # Episode 1: window [10.40, 10.60]; its first command only at 10.45 -> row 10.40 dropped
    # (episode 0's command at 10.28 is recent, but belongs to another episode).
    T1 = 10 * NS + 400_000_000
    for i in range(11):
        msgs.append(("/joint_states", _state(T1 + i * 20_000_000, 50.0 + i, 60.0 + i), T1 + i * 20_000_000 + 2_000_000))
    for j, ms in enumerate([50, 150]):
        stamp = T1 + ms * 1_000_000
        msgs.append(("/joint_trajectory_controller/joint_trajectory", _command(stamp, 300.0 + j, 400.0 + j),
                     stamp + 1_000_000))
    msgs.append(("/genpolicy_sim/episode", _status(1, T1, T1 + 200_000_000), T1 + 205_000_000))
    # Episode 2 was cut short (reset): skipped.
    msgs.append(("/genpolicy_sim/episode", _status(2, 12 * NS, 12 * NS + NS, completed=False), 12 * NS))

    # Jitter: messages arrive out of stamp order (receive times shuffled within +-15 ms).
    rng = np.random.default_rng(1)
    jittered = [(topic, msg, recv + int(rng.integers(-15_000_000, 15_000_000))) for topic, msg, recv in msgs]
    jittered.sort(key=lambda m: m[2])
    stamps_in_arrival = [_ns(m.header.stamp) for t, m, _ in jittered if t == "/joint_states"]
    assert stamps_in_arrival != sorted(stamps_in_arrival), "the test needs out-of-order arrival"

    path = tmp_path / "synthetic"
    with BagWriter(path) as bag:
        bag.add_topic("/joint_states", JointState)
        bag.add_topic("/joint_trajectory_controller/joint_trajectory", JointTrajectory)
        bag.add_topic("/genpolicy_sim/episode", String)
        for topic, msg, recv in jittered:
            bag.write(topic, msg, recv)

    ds = bag_to_episodes(path, tmp_path / "episodes", joint_names=["shoulder", "elbow"],
                         state_names=["shoulder", "elbow", "target_x"], dt=0.1)
    assert len(ds) == 2
    ep0, ep1 = ds[0], ds[1]
    np.testing.assert_allclose(ep0.timestamp, [10.0, 10.1, 10.2, 10.3], atol=1e-9)
    # latest state at or before 10.0/10.1/10.2/10.3 -> i = 0, 5, 10, 15
    np.testing.assert_array_equal(ep0.state, [[0, 10, 0.5], [5, 15, 0.5], [10, 20, 0.5], [15, 25, 0.5]])
    # latest command at or before: 10.00 (j0), 10.07 (j1), 10.14 (j2), 10.28 (j4); first point only
    np.testing.assert_array_equal(ep0.action, [[100, 200], [101, 201], [102, 202], [104, 204]])
    np.testing.assert_allclose(ep1.timestamp, [10.5, 10.6], atol=1e-9)
    np.testing.assert_array_equal(ep1.state, [[55, 65, 0.5], [60, 70, 0.5]])
    np.testing.assert_array_equal(ep1.action, [[300, 400], [301, 401]])
    assert ds.metadata.dt == 0.1 and ds.metadata.cameras == {}
    assert any("not completed" in s for s in ds.report.skipped_episodes), ds.report


def test_bag_to_episodes_without_status_splits_on_gaps_and_backwards_time(tmp_path):
    """No ~/episode messages: segments where state stamps (in arrival order) jump forward or back."""
    path = tmp_path / "loop"
    segments = [10 * NS, 20 * NS, 15 * NS]  # a 10 s gap, then time going back 5 s (a replay loop)
    recv = 100 * NS  # the recording clock runs on regardless
    with BagWriter(path) as bag:
        bag.add_topic("/joint_states", JointState)
        bag.add_topic("/joint_trajectory_controller/joint_trajectory", JointTrajectory)
        for k, t0 in enumerate(segments):
            for i in range(6):  # states and commands every 50 ms: 0 .. 250 ms
                stamp = t0 + i * 50_000_000
                bag.write("/joint_states", _state(stamp, 10.0 * k + i, 0.0), recv)
                bag.write("/joint_trajectory_controller/joint_trajectory", _command(stamp, 100.0 * k + i, -1.0),
                          recv + 1_000_000)
                recv += 10_000_000
    ds = bag_to_episodes(path, tmp_path / "eps", ["shoulder", "elbow"], ["shoulder"], dt=0.1)
    assert len(ds) == 3, ds.report
    for k, (episode, t0) in enumerate(zip(ds, segments)):
        np.testing.assert_allclose(episode.timestamp, t0 / NS + np.array([0.0, 0.1, 0.2]), atol=1e-9)
        np.testing.assert_array_equal(episode.state[:, 0], 10 * k + np.array([0, 2, 4]))
        np.testing.assert_array_equal(episode.action, [[100 * k + i, -1] for i in (0, 2, 4)])


def test_float64_commands_are_stamped_by_receive_time(tmp_path):
    """A Float64MultiArray has no header: its receive time (sim clock) is its stamp. The command
    answering the state at t arrives just after t, so it first counts at the next grid time."""
    path = tmp_path / "forward"
    T = 10 * NS
    with BagWriter(path) as bag:
        bag.add_topic("/joint_states", JointState)
        bag.add_topic("/forward_position_controller/commands", Float64MultiArray)
        bag.add_topic("/genpolicy_sim/episode", String)
        for i in range(6):
            stamp = T + i * 50_000_000
            bag.write("/joint_states", _state(stamp, float(i), 0.0), stamp)
            bag.write("/forward_position_controller/commands", Float64MultiArray(data=[100.0 + i, -1.0]),
                      stamp + 1_000_000)
        bag.write("/genpolicy_sim/episode", _status(0, T, T + 250_000_000), T + 260_000_000)
    ds = bag_to_episodes(path, tmp_path / "eps", ["shoulder", "elbow"], ["shoulder"], dt=0.1,
                         action_topic="/forward_position_controller/commands")
    (ep,) = list(ds)
    np.testing.assert_allclose(ep.timestamp, [10.1, 10.2], atol=1e-9)  # 10.0: no command received yet
    np.testing.assert_array_equal(ep.state[:, 0], [2, 4])
    np.testing.assert_array_equal(ep.action, [[101, -1], [103, -1]])


# --------------------------------------------------------------------------- genpolicy collect
def test_genpolicy_collect_two_episodes_converts_to_two_finite_episodes(tmp_path):
    from genpolicy_ros.sim.reach_env import ensure_headless_gl

    ensure_headless_gl()  # before the first `import mujoco`
    pytest.importorskip("mujoco")
    from genpolicy_ros.cli import main

    bag = tmp_path / "demos"
    rc = main(["collect", "--episodes", "2", "--out", str(bag), "--episode-s", "2.0", "--images",
               "--rate-factor", "4", "--seed", "3", "--domain-id", str(_domain_id()), "--no-progress"])
    assert rc == 0
    meta = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    topics = {t["topic_metadata"]["name"]: t["message_count"] for t in meta["topics_with_message_count"]}
    assert meta["storage_identifier"] == "mcap"
    assert topics["/genpolicy_sim/episode"] == 2 and topics["/joint_states"] >= 400, topics
    statuses = [json.loads(m.data) for *_, m in read_bag_messages(bag, ["/genpolicy_sim/episode"])]
    assert all(s["completed"] for s in statuses)

    assert topics["/target"] == topics["/joint_states"], "the target input is published with every joint state"
    out = bags_to_dataset_dir([bag], images=True)  # the mapping genpolicy collect recorded in the bag
    ds = EpisodeDataset(out)
    assert len(ds) == 2 and ds.metadata.cameras == {"overhead": [64, 64]}
    # The joints and the target input's entries (read from /target) are kept, and the data set
    # says which entries came from the input and which task recorded it.
    assert ds.metadata.state_names == ["shoulder", "elbow", "target_x", "target_y"]
    assert ds.metadata.state_inputs == {"target": {"type": "point", "names": ["target_x", "target_y"]}}
    assert ds.metadata.task == "reach" and ds.metadata.dt == 0.05
    # An image model of the reach task observes the arm and learns the target's position on
    # the side (auxiliary), it does not get it as input.
    from genpolicy_ros.tasks import get_task

    assert get_task("reach").observation_defaults(True) == {
        "observation": {"state_names": ["shoulder", "elbow"]}, "auxiliary": {"state_names": ["target_x", "target_y"]}}
    for episode, status in zip(ds, statuses):
        n = len(episode)
        assert n == 41, f"2 s at dt 0.05 s should give 41 rows, got {n}"
        assert np.all(np.isfinite(episode.state)) and np.all(np.isfinite(episode.action))
        assert episode.images["overhead"].shape == (n, 64, 64, 3) and episode.images["overhead"].std() > 5
        assert episode.timestamp[0] == pytest.approx(status["start_ns"] / NS)
        # Row 0: the expert's first command is (almost) the start pose; the last: the goal it reached.
        assert np.abs(episode.action[0] - episode.state[0, :2]).max() < 0.05
        assert np.abs(episode.action[-1] - episode.state[-1, :2]).max() < 0.05
        moved = np.abs(episode.state[-1, :2] - episode.state[0, :2]).max()
        assert moved > 0.3, f"the arm barely moved ({moved:.3f} rad): not an expert demonstration"
        np.testing.assert_allclose(episode.state[:, 2:], episode.state[:1, 2:].repeat(n, 0))  # target fixed


def test_bag_writer_output_passes_the_strict_rosbags_deserializer(tmp_path):
    """serialize_message of these rclpy wheels appends stray bytes; BagWriter cuts them."""
    from rclpy.serialization import deserialize_message, serialize_message
    from rosbags.rosbag2 import Reader

    from genpolicy_ros.data.bags import get_typestore

    msg = JointState(name=["a", "b"], position=[1.0, 2.0])
    msg.header.stamp = _time(5 * NS + 1)
    path = tmp_path / "strict"
    with BagWriter(path) as bag:
        bag.add_topic("/js", JointState)
        bag.write("/js", msg, 1)
    store = get_typestore()
    with Reader(path) as reader:
        ((conn, _, raw),) = list(reader.messages())
    decoded = store.deserialize_cdr(raw, conn.msgtype)  # raises on > 3 trailing bytes
    assert list(decoded.position) == [1.0, 2.0] and _ns(decoded.header.stamp) == 5 * NS + 1
    assert deserialize_message(bytes(raw), JointState) == msg
    assert len(raw) <= len(serialize_message(msg))


# --------------------------------------------------------------------------- any robot's bag
def _other_robot_bag(path, seconds=3.0, command="trajectory"):
    """A robot that is not the sim: joints j1..j3, a cube pose on /cube_pose, commands for j1, j2
    on a non-standard topic at 20 Hz, states at 100 Hz, no episode messages."""
    from geometry_msgs.msg import PoseStamped

    T = 50 * NS
    with BagWriter(path) as bag:
        bag.add_topic("/joint_states", JointState)
        bag.add_topic("/cube_pose", PoseStamped)
        topic = "/arm/command"
        bag.add_topic(topic, JointTrajectory if command == "trajectory" else Float64MultiArray)
        for i in range(int(seconds * 100)):
            stamp = T + i * 10_000_000
            js = JointState(name=["j3", "j1", "j2"], position=[0.3, 0.01 * i, -0.01 * i])
            js.header.stamp = _time(stamp)
            bag.write("/joint_states", js, stamp + 1_000_000)
            pose = PoseStamped()
            pose.header.stamp = _time(stamp)
            pose.pose.position.x, pose.pose.position.y, pose.pose.position.z = 0.5, 0.001 * i, 0.02
            pose.pose.orientation.w = 1.0
            bag.write("/cube_pose", pose, stamp + 2_000_000)
            if i % 5 == 0:
                if command == "trajectory":
                    cmd = JointTrajectory(joint_names=["j2", "j1"])
                    cmd.header.stamp = _time(stamp)
                    cmd.points = [JointTrajectoryPoint(positions=[-0.01 * i - 0.05, 0.01 * i + 0.05],
                                                       time_from_start=Duration(nanosec=50_000_000))]
                else:
                    cmd = Float64MultiArray(data=[0.01 * i + 0.05, -0.01 * i - 0.05])
                bag.write(topic, cmd, stamp + 3_000_000)
    return path


def test_a_bag_from_another_robot_converts_with_the_mapping_inferred_from_it(tmp_path):
    from genpolicy_ros.data.bag_mapping import infer_bag_mapping

    bag = _other_robot_bag(tmp_path / "robot")
    mapping = infer_bag_mapping([bag])
    assert mapping.action_topic == "/arm/command" and mapping.action_joints == ("j2", "j1")
    assert mapping.joint_state_names == ("j3", "j1", "j2") and mapping.dt == 0.05
    names = [f"cube_pose_{f}" for f in ("x", "y", "z", "qw", "qx", "qy", "qz")]
    assert mapping.state_inputs == {"cube_pose": {"type": "pose", "names": names}}
    assert mapping.cameras == {} and mapping.task == ""
    text = mapping.describe()
    assert "inferred: the only JointTrajectory topic" in text and "median period" in text, text
    ds = EpisodeDataset(bags_to_dataset_dir([bag], tmp_path / "ds", mapping=mapping))
    (ep,) = list(ds)
    assert ds.metadata.state_names == ["j3", "j1", "j2", *names]
    assert ds.metadata.state_inputs == mapping.state_inputs and ds.metadata.dt == 0.05
    # Row k at 50 + 0.05 k s: state i = 5 k, the cube at y = 0.001 i, the command of that stamp.
    k = np.arange(len(ep))
    np.testing.assert_allclose(ep.state[:, 1], 0.05 * k, atol=1e-6)
    np.testing.assert_allclose(ep.state[:, 4], 0.005 * k, atol=1e-6)
    np.testing.assert_allclose(ep.state[:, [3, 5, 6]], [[0.5, 0.02, 1.0]] * len(ep), atol=1e-6)
    np.testing.assert_allclose(ep.action, np.stack([-0.05 * k - 0.05, 0.05 * k + 0.05], 1), atol=1e-6)

    # A Float64MultiArray command names no joints: say which, or the conversion refuses.
    forward = _other_robot_bag(tmp_path / "forward", command="forward")
    with pytest.raises(ValueError, match="--action-joints"):
        infer_bag_mapping([forward])
    assert infer_bag_mapping([forward], action_joints=["j1", "j2"]).sources["action_joints"] == "option"


def test_genpolicy_train_on_another_robots_bag_prints_the_mapping_and_records_the_inputs(tmp_path, capsys):
    from genpolicy_ros.cli import main
    from genpolicy_ros.core.checkpoint import read_model_config

    bag = _other_robot_bag(tmp_path / "robot")
    out = tmp_path / "model"
    rc = main(["train", "--bag", str(bag), "--out", str(out), "--steps", "2", "--batch-size", "4", "--T-p", "4",
               "--T-a", "2", "--no-progress", "--state-joints", "j1,j2", "--state-input", "cube_pose=pose:cx,cy"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "state joints   j1, j2  (option)" in err and "cube_pose (pose /cube_pose): cx, cy  (option)" in err, err
    cfg, doc = read_model_config(out)
    assert cfg.observation.state_names == ("j1", "j2", "cx", "cy")
    assert cfg.observation.state_inputs == {"cube_pose": {"type": "pose", "names": ["cx", "cy"]}}
    assert cfg.action.joint_names == ("j2", "j1") and cfg.horizon.dt == 0.05
    assert "task" not in doc["metadata"], "no task was named or recorded"


def test_an_older_bag_with_the_target_in_joint_state_still_converts(tmp_path):
    """Before the target had its own topic the sim published it as JointState entries: with
    the reach task's defaults those names are read from JointState."""
    from genpolicy_ros.data.bag_mapping import infer_bag_mapping
    from genpolicy_ros.tasks import get_task

    path = tmp_path / "old"
    T = 10 * NS
    with BagWriter(path) as bag:
        bag.add_topic("/joint_states", JointState)
        bag.add_topic("/joint_trajectory_controller/joint_trajectory", JointTrajectory)
        for i in range(20):
            stamp = T + i * 50_000_000
            bag.write("/joint_states", _state(stamp, float(i), 0.0), stamp)
            bag.write("/joint_trajectory_controller/joint_trajectory", _command(stamp, 100.0 + i, -1.0), stamp + 1)
    mapping = infer_bag_mapping([path], task_defaults=get_task("reach").train_defaults(images=False))
    assert mapping.sources["state_inputs"] == "task reach" and mapping.task == "reach"
    from genpolicy_ros.data.bag_mapping import convert_bags

    ds = convert_bags([path], tmp_path / "ds", mapping)
    assert ds.metadata.state_names == ["shoulder", "elbow", "target_x", "target_y"]
    assert any("read from JointState" in n for n in ds.report.notes), ds.report.notes
    np.testing.assert_allclose(ds[0].state[:, 2:], [[0.5, 0.25]] * len(ds[0]))
    # Without a task the bag's own JointState names are the state (what the old sim published).
    plain = infer_bag_mapping([path])
    assert plain.state_names == ("target_y", "elbow", "shoulder", "target_x") and plain.state_inputs == {}
