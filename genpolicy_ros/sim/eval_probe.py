"""The evaluator node of ``genpolicy eval``: what it hears and the services it calls.

It records the sim's ``~/episode`` outcomes, the joint states (for the episode paths), the
commands as a controller receives them (jitter, on the middleware's receive stamps where
rclpy passes ``MessageInfo``), the policy node's ``/diagnostics`` and ``~/action_chunk``
(chunk age; the command index at which each merged chunk arrived: the seams of the executed
command trace, for the seam smoothness metric), and calls the policy node's lifecycle ``change_state`` and the sim's
``~/reset``. Its subscriptions are filled by the executor thread; read them under ``lock``.
"""
from __future__ import annotations

import json
import threading
import time
from typing import Callable, List, Optional, Sequence

import numpy as np

from ..ros import topics
from .eval_results import PATH_PERIOD_S

NS_PER_S = 1_000_000_000
POLICY_NODE = topics.POLICY_NODE
SIM_NODE = topics.SIM_NODE


class Evaluator:
    """Evaluator-side node state: subscriptions filled by the executor thread.

    ``joint_names``: the robot joints recorded per joint state (by name); ``path_xy``: joint
    positions ``[..., len(joint_names)]`` -> ``[..., 2]`` point of the episode path (None: no path).
    """

    def __init__(self, context, output_mode: str, control_rate_hz: float, joint_names: Sequence[str] = (),
                 path_xy: Optional[Callable[[np.ndarray], np.ndarray]] = None):
        from diagnostic_msgs.msg import DiagnosticArray
        from lifecycle_msgs.srv import ChangeState
        from rclpy.node import Node
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Float64MultiArray, String
        from std_srvs.srv import Trigger
        from trajectory_msgs.msg import JointTrajectory

        from ..ros.qos import command_qos

        self.node = Node("genpolicy_eval", context=context)
        self.lock = threading.Lock()
        self.period_s = 1.0 / control_rate_hz
        self.episodes: List[dict] = []  # ~/episode JSON, in order
        self.joint_names = list(joint_names)
        self.path_xy = path_xy
        self.states: List[tuple] = []  # (stamp ns, joint positions [len(joint_names)])
        self.command_times: List[float] = []  # monotonic arrival, current episode
        self.command_trace: List[np.ndarray] = []  # first point of each command, current episode: [D] each
        self.seam_indices: List[int] = []  # index into command_trace where a merged chunk arrived (episode)
        self._chunks_in_episode = 0
        self.traces: List[tuple] = []  # per finished episode: (trace [N, D], seam indices)
        self.jitter_ms: List[float] = []
        self.commands = 0
        self.nonfinite = 0
        self.episode_commands = 0
        self.episode_nonfinite = 0
        self.recording = False
        self.diagnostics: List[dict] = []
        self.chunk_age_ms: List[float] = []
        qos = command_qos(depth=50)
        self.node.create_subscription(String, topics.private(SIM_NODE, topics.EPISODE), self._on_episode, qos)
        self.node.create_subscription(JointState, topics.JOINT_STATES, self._on_state, qos)
        if output_mode == "joint_trajectory":
            self._subscribe_commands(JointTrajectory, topics.TRAJECTORY, self._trajectory_values, qos)
        else:
            self._subscribe_commands(Float64MultiArray, topics.FORWARD,
                                     lambda msg: np.asarray(msg.data, dtype=np.float64)[None, :], qos)
        self.node.create_subscription(DiagnosticArray, topics.DIAGNOSTICS, self._on_diagnostics, qos)
        self.node.create_subscription(JointTrajectory, topics.private(POLICY_NODE, topics.ACTION_CHUNK),
                                      self._on_chunk, qos)
        self.change_state = self.node.create_client(ChangeState, f"/{POLICY_NODE}/change_state")
        self.reset = self.node.create_client(Trigger, topics.private(SIM_NODE, topics.RESET_SERVICE))
        self.start_from_measured = self.node.create_client(Trigger, f"/{POLICY_NODE}/start_from_measured")
        self._Trigger = Trigger
        self._ChangeState = ChangeState

    # ---------------------------------------------------------------- callbacks
    def _on_episode(self, msg) -> None:
        with self.lock:
            self.episodes.append(json.loads(msg.data))

    def _on_state(self, msg) -> None:
        try:
            idx = [list(msg.name).index(n) for n in self.joint_names]
            q = np.array([float(msg.position[i]) for i in idx])  # [len(joint_names)]
        except (ValueError, IndexError):
            return
        stamp = int(msg.header.stamp.sec) * NS_PER_S + int(msg.header.stamp.nanosec)
        with self.lock:
            self.states.append((stamp, q))

    def _subscribe_commands(self, msg_type, topic, values, qos) -> None:
        """Commands timed on the middleware's receive stamp (``MessageInfo``), so that the
        jitter is the command stream's and not this process's Python scheduling (the sim
        renders in it); on an rclpy without MessageInfo callbacks (Humble), on arrival."""
        from ..ros.message_info import subscribe_with_info

        def on_command(msg, info):
            self._on_command(values(msg), None if info is None else int(info["received_timestamp"]) * 1e-9)

        with_info = subscribe_with_info(self.node, msg_type, topic, on_command, qos)
        self.jitter_clock = "middleware receive stamp" if with_info else "arrival in the evaluator's callback"

    def _on_command(self, values: np.ndarray, received_s: Optional[float] = None) -> None:
        """``values``: ``[n_points, D]`` positions of one command (a forward command: one point)."""
        t = time.monotonic() if received_s is None else received_s
        with self.lock:
            if not self.recording:
                return
            trace = self.command_trace
            if values.size and np.all(np.isfinite(values[0])) and (not trace or trace[-1].shape == values[0].shape):
                trace.append(values[0])  # [D]
            self.commands += 1
            self.episode_commands += 1
            if not np.all(np.isfinite(values)):
                self.nonfinite += 1
                self.episode_nonfinite += 1
            if self.command_times:
                self.jitter_ms.append(1e3 * abs(t - self.command_times[-1] - self.period_s))
            self.command_times.append(t)

    @staticmethod
    def _trajectory_values(msg) -> np.ndarray:
        points = [list(pt.positions) for pt in msg.points]
        width = len(points[0]) if points else 0
        if any(len(p) != width for p in points):  # malformed: counted, kept out of the trace
            return np.full((1, 1), np.nan)
        return np.array(points, dtype=np.float64).reshape(len(points), width)  # [n_points, D]

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            if status.name.startswith(f"{POLICY_NODE}:"):
                values = {kv.key: kv.value for kv in status.values}
                with self.lock:
                    self.diagnostics.append(values)

    def _on_chunk(self, msg) -> None:
        now_ns = self.node.get_clock().now().nanoseconds
        stamp = int(msg.header.stamp.sec) * NS_PER_S + int(msg.header.stamp.nanosec)
        with self.lock:
            if stamp > 0:
                self.chunk_age_ms.append((now_ns - stamp) / 1e6)
            if self.recording:
                # The node publishes a merged chunk right after the command of the tick that merged
                # it: the next command is (within a tick) the first the new chunk contributes. The
                # episode's first chunk is no seam.
                if self._chunks_in_episode:
                    self.seam_indices.append(len(self.command_trace))
                self._chunks_in_episode += 1

    # ---------------------------------------------------------------- services
    def _call(self, client, request, timeout_s: float):
        if not client.wait_for_service(timeout_sec=min(timeout_s, 60.0)):
            raise TimeoutError(f"service {client.srv_name} is not available")
        future = client.call_async(request)
        deadline = time.monotonic() + timeout_s
        while not future.done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"service {client.srv_name} did not answer within {timeout_s:.0f} s")
            time.sleep(0.005)
        return future.result()

    def transition(self, transition_id: int, timeout_s: float = 30.0) -> bool:
        request = self._ChangeState.Request()
        request.transition.id = transition_id
        return bool(self._call(self.change_state, request, timeout_s).success)

    def reset_sim(self) -> None:
        """Reset the simulator — the arm is placed at a new start while the policy node is
        inactive — and tell the policy node to start from there (its last command belongs
        to the previous episode; without this it would hold with a tracking fault)."""
        response = self._call(self.reset, self._Trigger.Request(), 10.0)
        if not response.success:
            raise RuntimeError(f"sim reset failed: {response.message}")
        response = self._call(self.start_from_measured, self._Trigger.Request(), 10.0)
        if not response.success:
            raise RuntimeError(f"policy node refused start_from_measured: {response.message}")

    # ---------------------------------------------------------------- per episode
    def begin_episode(self) -> None:
        with self.lock:
            self.command_times = []
            self.command_trace = []
            self.seam_indices = []
            self._chunks_in_episode = 0
            self.episode_commands = 0
            self.episode_nonfinite = 0
            self.recording = True

    def end_episode(self) -> tuple:
        with self.lock:
            self.recording = False
            trace = np.array(self.command_trace, dtype=np.float64)  # [N, D]
            if trace.ndim == 2 and trace.shape[0]:
                self.traces.append((trace, list(self.seam_indices)))
            return self.episode_commands, self.episode_nonfinite

    def fingertip_path(self, start_ns: int, end_ns: int) -> List[List[float]]:
        """The episode's path (``path_xy`` of the joint states, every PATH_PERIOD_S); [] without ``path_xy``."""
        with self.lock:
            rows = [s for s in self.states if start_ns <= s[0] <= end_ns]
            self.states = [s for s in self.states if s[0] > end_ns]
        if self.path_xy is None:
            return []
        out, next_ns = [], start_ns
        for stamp, q in rows:
            if stamp >= next_ns or stamp == rows[-1][0]:
                tip = self.path_xy(q)  # [2]
                out.append([round(float(tip[0]), 5), round(float(tip[1]), 5)])
                next_ns = stamp + int(PATH_PERIOD_S * NS_PER_S)
        return out

    def states_after(self, stamp_ns: int) -> int:
        with self.lock:
            return sum(1 for s in self.states if s[0] > stamp_ns)


def wait_for(predicate, timeout_s: float, what: str, period: float = 0.005) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(period)
