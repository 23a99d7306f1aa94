"""Shared fixtures of the policy-node integration tests (not a test module itself).

Real rclpy over real DDS on loopback: each test module gets its own ``rclpy`` Context on
its own ``ROS_DOMAIN_ID``; the node under test spins in a SingleThreadedExecutor thread (as in `genpolicy node`), the
test's "robot" node in a second executor thread. The robot publishes JointState at a
robot rate (header stamp = its clock) and tracks the commands it receives perfectly
(the measured position is the last command), like a position-controlled arm.

Test modules load it by path (pytest runs with ``--import-mode=importlib``).
"""
from __future__ import annotations

import threading
import time
from typing import Callable, List, Optional

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState
from rcl_interfaces.srv import SetParameters
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from genpolicy_ros.ros.qos import command_qos, sensor_qos
from genpolicy_ros.runtime.rate_loop import RateLoop

ARM = ("shoulder", "elbow")
STATE_NAMES = ("shoulder", "elbow", "target_x", "target_y")
TARGET = (0.1, 0.05)


def make_model_dir(path, kind: str = "flow", cameras=(), image_size=(64, 64), seed: int = 0,
                   T_p: int = 8, T_a: int = 4, dt: float = 0.05, num_train_steps: int = 20,
                   target_input: bool = False):
    """Tiny random-weight model directory (plumbing tests: behaviour, not skill).

    ``target_input``: the target is a non-joint input (``target``, PointStamped) as in the
    shipped reach models and the sim node; by default it is read from JointState (the fake
    robot publishes it there)."""
    import torch

    from genpolicy_ros.core.checkpoint import save_model_dir
    from genpolicy_ros.core.config import (
        ActionSpec,
        DiffusionConfig,
        EncoderConfig,
        HorizonConfig,
        NetworkConfig,
        ObservationSpec,
        PolicyConfig,
    )
    from genpolicy_ros.core.policy import GenerativePolicy

    encoder = {"proprio_feature_dim": 16, "proprio_hidden": [32]}
    if cameras:
        encoder.update(image_feature_dim=16, vision_width=8, num_keypoints=8)
    cfg = PolicyConfig(
        action=ActionSpec(joint_names=list(ARM), lower_limits=[-3.0, -2.5], upper_limits=[3.0, 2.5]),
        observation=ObservationSpec(state_names=list(STATE_NAMES), camera_names=list(cameras),
                                    image_size=tuple(image_size),
                                    state_inputs={"target": {"type": "point", "names": list(STATE_NAMES[2:])}}
                                    if target_input else {}),
        kind=kind, horizon=HorizonConfig(T_o=2, T_p=T_p, T_a=T_a, dt=dt),
        diffusion=DiffusionConfig(num_train_steps=num_train_steps, default_steps=5),
        network=NetworkConfig(params={"down_dims": [16, 32]}),
        encoder=EncoderConfig(params=encoder), seed=seed)
    policy = GenerativePolicy.from_config(cfg)
    g = torch.Generator().manual_seed(seed)
    actions = torch.rand(64, T_p, 2, generator=g) * 0.6 - 0.3  # [64, T_p, 2] within +-0.3 rad
    states = torch.rand(64, 2, 4, generator=g) * 0.6 - 0.3  # [64, T_o, 4]
    policy.fit_normalizers(actions, states)
    save_model_dir(policy.eval(), path)
    return str(path)


def wait_for(predicate: Callable[[], bool], timeout: float, period: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(period)
    return bool(predicate())


def diag_values(msg: DiagnosticArray) -> dict:
    status = msg.status[0]
    out = {kv.key: kv.value for kv in status.values}
    out["_level"] = int.from_bytes(status.level, "little") if isinstance(status.level, bytes) else int(status.level)
    out["_message"] = status.message
    return out


class FakeRobot:
    """Test-side node: joint states out (rate loop thread), commands + diagnostics in."""

    def __init__(self, context: Context, rate_hz: float = 100.0, node_name: str = "fake_robot",
                 policy_node: str = "genpolicy"):
        self.node = rclpy.create_node(node_name, context=context)
        self.policy_node = policy_node
        self.lock = threading.Lock()
        self.position = np.zeros(2)  # [2] measured arm position (= last command)
        self.extra = dict(zip(STATE_NAMES[2:], TARGET))
        self.commands: List[tuple] = []  # (arrival monotonic, positions [2], msg)
        self.diagnostics: List[dict] = []
        self.chunks: List[JointTrajectory] = []
        self.mutate: Optional[Callable[[JointState], Optional[JointState]]] = None
        self.stamp_offset_s = 0.0
        self.published = 0
        self._js_pub = self.node.create_publisher(JointState, "joint_states", sensor_qos())
        # Deep queues: this Python subscriber shares the GIL with the node under test and
        # must not lose commands when it is late (a C++ controller would not be).
        self.node.create_subscription(JointTrajectory, "joint_trajectory_controller/joint_trajectory",
                                      self._on_trajectory, command_qos(depth=500))
        self.node.create_subscription(Float64MultiArray, "forward_position_controller/commands",
                                      self._on_forward, command_qos(depth=500))
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, command_qos())
        self.node.create_subscription(JointTrajectory, f"/{policy_node}/action_chunk", self._on_chunk,
                                      command_qos())
        self._loop = RateLoop(rate_hz, self._tick, name="fake_robot")
        self.feeding = threading.Event()

    # ---------------------------------------------------------------- topics
    def _on_trajectory(self, msg):
        t = time.monotonic()
        index = {n: i for i, n in enumerate(msg.joint_names)}
        pos = np.array([msg.points[-1].positions[index[j]] for j in ARM])  # [2] model order
        with self.lock:
            self.commands.append((t, pos, msg))
            self.position = pos

    def _on_forward(self, msg):
        t = time.monotonic()
        pos = np.array(msg.data)  # [2]
        with self.lock:
            self.commands.append((t, pos, msg))
            self.position = pos

    def _on_diag(self, msg):
        if msg.status and msg.status[0].name.startswith(self.policy_node):
            with self.lock:
                self.diagnostics.append(diag_values(msg))

    def _on_chunk(self, msg):
        with self.lock:
            self.chunks.append(msg)

    def joint_state(self, stamp_s: Optional[float] = None) -> JointState:
        with self.lock:
            pos = self.position.copy()
        now = self.node.get_clock().now().nanoseconds * 1e-9 + self.stamp_offset_s
        stamp_s = now if stamp_s is None else stamp_s
        msg = JointState(name=list(STATE_NAMES), position=[*pos.tolist(), *self.extra.values()])
        msg.header.stamp.sec = int(stamp_s)
        msg.header.stamp.nanosec = int(round((stamp_s - int(stamp_s)) * 1e9)) % 1_000_000_000
        return msg

    def _tick(self, tick):
        if not self.feeding.is_set():
            return
        msg = self.joint_state()
        if self.mutate is not None:
            msg = self.mutate(msg)
            if msg is None:
                return
        self._js_pub.publish(msg)
        self.published += 1

    def publish_joint_state(self, msg: JointState) -> None:
        self._js_pub.publish(msg)

    # ---------------------------------------------------------------- helpers
    def start(self):
        self._loop.start()
        self.feeding.set()

    def stop(self):
        self.feeding.clear()
        self._loop.stop()

    def clear(self):
        with self.lock:
            self.commands.clear()
            self.diagnostics.clear()
            self.chunks.clear()

    def n_commands(self) -> int:
        with self.lock:
            return len(self.commands)

    def commands_since(self, t0: float) -> list:
        with self.lock:
            return [c for c in self.commands if c[0] >= t0]

    def next_commands(self, n: int = 10, timeout: float = 3.0) -> np.ndarray:
        """The next ``n`` commands received from now on, ``[n, 2]`` (waits; a busy machine
        may stall the executor for a while, so windows are counted, not timed)."""
        t = time.monotonic()
        ok = wait_for(lambda: len(self.commands_since(t)) >= n, timeout)
        got = self.commands_since(t)
        assert ok, f"only {len(got)} commands in {timeout} s (wanted {n})"
        return np.array([c[1] for c in got[:n]])  # [n, 2]

    def latest_diag(self, after: float = 0.0, timeout: float = 3.0) -> dict:
        """The first diagnostics message received after monotonic time ``after``."""
        with self.lock:
            start = len(self.diagnostics)
        ok = wait_for(lambda: len(self.diagnostics) > start, timeout)
        assert ok, "no /diagnostics received"
        if after:
            time.sleep(max(0.0, after - time.monotonic()))
            with self.lock:
                start = len(self.diagnostics)
            assert wait_for(lambda: len(self.diagnostics) > start, timeout), "no /diagnostics received"
        with self.lock:
            return dict(self.diagnostics[-1])

    def call(self, srv_type, name: str, request, timeout: float = 30.0):
        client = self.node.create_client(srv_type, name)
        try:
            assert client.wait_for_service(timeout_sec=10.0), f"service {name} not available"
            future = client.call_async(request)
            assert wait_for(future.done, timeout), f"service {name} did not answer in {timeout} s"
            return future.result()
        finally:
            self.node.destroy_client(client)

    def trigger(self, name: str):
        return self.call(Trigger, f"/{self.policy_node}/{name}", Trigger.Request())

    def transition(self, transition_id: int, timeout: float = 90.0) -> bool:
        req = ChangeState.Request()
        req.transition.id = transition_id
        return self.call(ChangeState, f"/{self.policy_node}/change_state", req, timeout).success

    def set_params(self, **values):
        """SetParameters service; values may be rclpy Parameter objects or plain values."""
        req = SetParameters.Request()
        for name, value in values.items():
            p = value if isinstance(value, Parameter) else Parameter(name, value=value)
            req.parameters.append(p.to_parameter_msg())
        return self.call(SetParameters, f"/{self.policy_node}/set_parameters", req).results


class RosHarness:
    """One Context + domain, the node under test and the fake robot, each spinning in a thread."""

    def __init__(self, domain_id: int):
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = None
        self.robot: Optional[FakeRobot] = None
        self._threads = []
        self._executors = []

    def start(self, node, robot_rate_hz: float = 100.0):
        self.node = node
        ex = SingleThreadedExecutor(context=self.context)
        ex.add_node(node)
        self.robot = FakeRobot(self.context, rate_hz=robot_rate_hz, policy_node=node.get_name())
        ex2 = SingleThreadedExecutor(context=self.context)
        ex2.add_node(self.robot.node)
        for e in (ex, ex2):
            t = threading.Thread(target=e.spin, daemon=True)
            t.start()
            self._threads.append(t)
            self._executors.append(e)
        return self.robot

    def close(self):
        if self.robot is not None:
            self.robot.stop()
        for e in self._executors:  # stop spinning before anything is destroyed
            e.shutdown(timeout_sec=2.0)
        if self.node is not None:
            self.node.destroy_node()
        if self.robot is not None:
            self.robot.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        for t in self._threads:
            t.join(2.0)


CONFIGURE = Transition.TRANSITION_CONFIGURE
ACTIVATE = Transition.TRANSITION_ACTIVATE
DEACTIVATE = Transition.TRANSITION_DEACTIVATE
CLEANUP = Transition.TRANSITION_CLEANUP

