"""The pose input path over real DDS: the ALOHA sim node publishes ``cube_pose``
(PoseStamped, the joint state's stamp), the policy node reads it by the model's
``observation.state_inputs`` and assembles it into the state by name; a stale pose stops
chunk requests, a fresh one resumes them.

The sim's ``cube_pose`` reaches the policy through a relay node in the test (remapped
``sim/cube_pose`` -> ``cube_pose``) so the test can withhold it. The model is a tiny
random-weight one (plumbing, not skill) observing the 14 joints and the 7 pose entries.
"""
import threading
import time

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytestmark = [pytest.mark.ros]

from genpolicy_ros.sim.aloha.assets import assets_available  # noqa: E402

if not assets_available():
    pytest.skip("gym-aloha assets are not installed (make install)", allow_module_level=True)

import rclpy  # noqa: E402
from geometry_msgs.msg import PoseStamped  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from genpolicy_ros.ros.policy_node import PolicyNode  # noqa: E402
from genpolicy_ros.ros.qos import command_qos  # noqa: E402
from genpolicy_ros.sim.node import SimNode  # noqa: E402
from genpolicy_ros.tasks import get_task  # noqa: E402

import policy_node_harness as H  # noqa: E402  (test/ros is on pytest's pythonpath)

DOMAIN_ID = 70  # fixed: clear of test_soak (60..69), the fixed suites (71..81), test_fuzz_node (81..98)
TIMEOUT_S = 0.3
TASK = get_task("aloha_transfer_cube")
POSE_NAMES = TASK.input_names["cube_pose"]  # cube_x ... cube_qz


def _model_dir(path) -> str:
    """Tiny random flow model: 14 ALOHA joints + the 7 cube_pose entries -> 14 actions."""
    import torch

    from genpolicy_ros.core.checkpoint import save_model_dir
    from genpolicy_ros.core.config import (
        ActionSpec,
        EncoderConfig,
        HorizonConfig,
        NetworkConfig,
        ObservationSpec,
        PolicyConfig,
    )
    from genpolicy_ros.core.policy import GenerativePolicy

    joints = list(TASK.joint_names)
    cfg = PolicyConfig(
        action=ActionSpec(joint_names=joints, lower_limits=list(TASK.lower_limits),
                          upper_limits=list(TASK.upper_limits)),
        observation=ObservationSpec(state_names=joints + list(POSE_NAMES),
                                    state_inputs={"cube_pose": {"type": "pose", "names": list(POSE_NAMES)}}),
        kind="flow", horizon=HorizonConfig(T_o=2, T_p=8, T_a=4, dt=0.04),
        network=NetworkConfig(params={"down_dims": [16, 32]}),
        encoder=EncoderConfig(params={"proprio_feature_dim": 16, "proprio_hidden": [32]}), seed=0)
    policy = GenerativePolicy.from_config(cfg)
    start = torch.tensor(TASK.make_env().reset(seed=0).joint_positions, dtype=torch.float32)  # [14]
    g = torch.Generator().manual_seed(0)
    actions = start + 0.02 * torch.randn(64, 8, 14, generator=g)  # [64, T_p, 14] near the start pose
    states = torch.cat([start.expand(64, 2, 14), 0.1 * torch.rand(64, 2, 7, generator=g)], dim=2)  # [64, 2, 21]
    policy.fit_normalizers(actions, states)
    save_model_dir(policy.eval(), path)
    return str(path)


class Relay:
    """sim/cube_pose -> cube_pose, recording what it forwards (by stamp) unless withheld."""

    def __init__(self, context):
        self.node = rclpy.create_node("cube_pose_relay", context=context)
        self.forward = threading.Event()
        self.forward.set()
        self.lock = threading.Lock()
        self.sent = {}  # stamp (s) -> [7] values in PoseStamped field order
        self.pub = self.node.create_publisher(PoseStamped, "cube_pose", command_qos(depth=10))
        self.node.create_subscription(PoseStamped, "sim/cube_pose", self._on_pose, command_qos(depth=10))

    def _on_pose(self, msg):
        if not self.forward.is_set():
            return
        p, q = msg.pose.position, msg.pose.orientation
        with self.lock:
            self.sent[msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec] = [p.x, p.y, p.z, q.w, q.x, q.y, q.z]
        self.pub.publish(msg)


@pytest.fixture(scope="module")
def ros(tmp_path_factory):
    model = _model_dir(tmp_path_factory.mktemp("aloha_model") / "flow")
    context = Context()
    rclpy.init(context=context, domain_id=DOMAIN_ID)
    sim = SimNode(context=context, start=False, cli_args=["--ros-args", "-r", "cube_pose:=sim/cube_pose"],
                  parameter_overrides=[Parameter("task", value=TASK.name), Parameter("camera_rate_hz", value=0.0),
                                       Parameter("episode_s", value=60.0)])
    relay = Relay(context)
    policy = PolicyNode(context=context, diagnostics_period_s=0.2, parameter_overrides=[
        Parameter("model_path", value=model), Parameter("control_rate_hz", value=50.0),
        Parameter("backend", value="torch"), Parameter("device", value="cpu"),
        Parameter("observation_timeout_s", value=TIMEOUT_S),
        *(Parameter(k, value=v) for k, v in TASK.defaults.node_parameters.items())])
    requests = []
    executors, threads = [], []
    for node in (sim, relay.node, policy):
        ex = SingleThreadedExecutor(context=context)
        ex.add_node(node)
        t = threading.Thread(target=ex.spin, daemon=True)
        t.start()
        executors.append(ex)
        threads.append(t)
    try:
        sim.start()
        policy.trigger_configure()
        engine = policy.engine
        submit = engine.worker.submit

        def spy(request):  # what the node asks the generator for: the assembled observation
            requests.append(request)
            return submit(request)

        engine.worker.submit = spy
        policy.trigger_activate()
        yield {"sim": sim, "relay": relay, "policy": policy, "requests": requests}
    finally:
        for ex in executors:
            ex.shutdown(timeout_sec=2.0)
        for node in (policy, relay.node, sim):
            node.destroy_node()
        rclpy.try_shutdown(context=context)
        for t in threads:
            t.join(2.0)


def test_the_pose_reaches_the_policy_by_name_with_the_joint_states_stamp(ros):
    requests, relay, sim = ros["requests"], ros["relay"], ros["sim"]
    assert H.wait_for(lambda: len(requests) >= 3, 60.0), "the policy node requested no chunk from the sim's topics"
    assert H.wait_for(lambda: sim.stats["accepted_commands"] > 10, 20.0), "no command reached the sim"
    joints = len(TASK.joint_names)
    matched = 0
    for request in list(requests):
        state = np.asarray(request.obs["state"])  # [T_o, 21] joints then cube_x ... cube_qz
        assert state.shape == (2, joints + 7)
        with relay.lock:
            sent = dict(relay.sent)
        stamp = min(sent, key=lambda s: abs(s - request.t0))
        if abs(stamp - request.t0) < 1e-6:  # the newest row is the pose stamped like the joint state
            np.testing.assert_allclose(state[-1, joints:], sent[stamp], atol=1e-9)
            matched += 1
    assert matched >= 1, "no request carried a forwarded pose at its own stamp"
    cube = state[-1, joints:]
    assert 0.0 <= cube[0] <= 0.2 and 0.4 <= cube[1] <= 0.6 and abs(np.linalg.norm(cube[3:]) - 1) < 1e-6, cube


def test_a_stale_pose_stops_the_requests_and_a_fresh_one_resumes_them(ros):
    requests, relay, policy = ros["requests"], ros["relay"], ros["policy"]
    assert H.wait_for(lambda: len(requests) >= 3, 60.0)
    def unavailable():  # snapshots refused because a stream is stale (by stamp or by arrival)
        counts = policy.engine.stats()["snapshot_unavailable"]
        return counts.get("stale_stamp", 0) + counts.get("stale_arrival", 0)

    refused_before = unavailable()
    relay.forward.clear()  # joint states keep coming; the pose does not
    time.sleep(TIMEOUT_S + 0.5)
    stalled_at = len(requests)
    time.sleep(1.0)
    assert len(requests) <= stalled_at + 1, f"{len(requests) - stalled_at} requests without a fresh cube_pose"
    assert unavailable() > refused_before, policy.engine.stats()["snapshot_unavailable"]
    relay.forward.set()
    assert H.wait_for(lambda: len(requests) >= stalled_at + 3, 20.0), "requests did not resume with the pose"
