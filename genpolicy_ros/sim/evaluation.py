"""Closed-loop evaluation over real ROS 2 topics: the logic behind ``genpolicy eval``.

One evaluation runs, in a ROS domain of its own (``domain_id``; default: picked from the
process id in 201..230, away from the test suites' 71..199)::

    this process                                           child process
    ┌──────────────────────────────────────────┐           ┌─────────────────────────────┐
    │ SimNode (genpolicy_sim, real time,       │ joint_    │ genpolicy node              │
    │   auto_reset off)   ── joint_states, ────┼─states──► │   (PolicyNode, lifecycle;   │
    │                        camera ──────────►│ camera    │    generation in its own    │
    │   ◄── commands ──────────────────────────┼───────────│    child process)           │
    │ Evaluator node: ~/episode, joint_states, │ /diagnostics, ~/action_chunk            │
    │   commands (jitter), /diagnostics,       │◄──────────│                             │
    │   ~/action_chunk; lifecycle + reset      │ change_state (service)                  │
    │   service clients                        │──────────►│                             │
    └──────────────────────────────────────────┘           └─────────────────────────────┘

The policy node runs in its own process (as on a robot: its executor thread must not share
a GIL with the simulator). Per episode ``i`` (1..N; the sim's episode 0, started when the
sim starts, is cut by the first reset and ignored):

1. the policy node is *inactive*; ``/genpolicy_sim/reset`` starts sim episode ``i``
   (target and start pose from seed ``seed·100003 + i``, the sim's rule);
2. once the evaluator has seen two joint states of the new episode, it activates the
   policy node (``lifecycle_msgs/srv/ChangeState``; activate resets the node's history and
   plan, so nothing carries over from the previous episode);
3. the sim ends the episode after ``episode_s`` of simulated time (= wall time at
   ``rate_factor`` 1) and publishes ``~/episode`` (success, mode, final distance);
4. the policy node is deactivated (it publishes one final hold) and the next episode starts.

What is measured:

- **success rate and modes** from the sim's ``~/episode`` messages (success criterion and
  mode classification of :mod:`genpolicy_ros.sim.reach_env`);
- **fingertip path** per episode from ``joint_states`` (``forward_kinematics``), for the plot;
- **generation latency** p50/p95/max from the policy node's ``/diagnostics`` (the node's
  :class:`~genpolicy_ros.runtime.latency.LatencyTracker`: p50/p95 of its rolling window
  of the last 100 chunks in the *last* report, max over all reports);
- **chunk age** p50/p95/max: receive time of each ``~/action_chunk`` minus its header stamp
  (the observation it was generated from) — observation-to-plan latency incl. transport;
- **command jitter** p50/p99/max: |inter-arrival time − 1/control_rate| of the commands as
  this process receives them, on the middleware's receive stamps (``MessageInfo``; the
  simulator shares this process, and its Python scheduling stays out of the figure); where
  rclpy cannot pass MessageInfo (Humble), on arrival in the callback (an upper bound).
  ``settings.jitter_clock`` says which.

Pacing: ``rate_factor`` 1.0 (real time) is the honest default: the policy must keep up
with a robot. A larger factor runs the sim faster than the policy node's wall clock
assumes and measures a different, harder problem.
"""
from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..ros.node_process import NodeProcess, node_command
from .reach_env import ALL_JOINTS, MODES, forward_kinematics

NS_PER_S = 1_000_000_000
POLICY_NODE = "genpolicy"
SIM_NODE = "genpolicy_sim"
OUTPUT_MODES = ("joint_trajectory", "forward_command")
BLENDINGS = ("none", "ensemble", "rtc")
SCHEMA_KEYS = ("model", "kind", "sampler", "num_steps", "episodes", "success_rate", "mode_histogram",
               "mode_fraction", "latency_ms", "command_jitter_ms", "per_episode", "machine", "timestamp")
PATH_PERIOD_S = 0.05  # fingertip path samples kept per episode (20 Hz is enough for a plot)


# --------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class EvalConfig:
    """Settings of one evaluation run; validated on construction.

    ``sampler``/``num_steps`` ``None`` = the policy node's defaults (the model's own sampler,
    10 steps). ``seed`` is the sim's seed (targets, start poses); ``policy_seed`` the node's
    sampler seed.
    """

    model_dir: str
    episodes: int = 10
    seed: int = 0
    sampler: Optional[str] = None
    num_steps: Optional[int] = None
    output_mode: str = "joint_trajectory"
    chunk_blending: Optional[str] = None  # None = the policy node's default
    control_rate_hz: float = 100.0
    action_horizon: Optional[int] = None
    episode_s: float = 3.0
    rate_factor: float = 1.0
    obstacle: bool = False  # the sim's obstacle variant (reach_env.obstacle_task)
    policy_seed: int = 0
    backend: str = "auto"
    device: str = "auto"
    domain_id: Optional[int] = None
    startup_timeout_s: float = 240.0
    progress: bool = True

    def __post_init__(self):
        if not Path(self.model_dir, "config.json").is_file():
            raise ValueError(f"model_dir {self.model_dir!r} is not a model directory (no config.json)")
        if isinstance(self.episodes, bool) or not isinstance(self.episodes, int) or self.episodes < 1:
            raise ValueError(f"episodes must be an int >= 1, got {self.episodes!r}")
        if not (isinstance(self.seed, int) and 0 <= self.seed < 2**31 // 100_003):
            raise ValueError(f"seed must be an int in [0, {2**31 // 100_003}), got {self.seed!r}")
        if self.sampler is not None and self.sampler not in ("flow", "ddim", "ddpm"):
            raise ValueError(f"sampler must be flow, ddim, ddpm or None (model default), got {self.sampler!r}")
        if self.num_steps is not None and not (isinstance(self.num_steps, int) and 1 <= self.num_steps <= 1000):
            raise ValueError(f"num_steps must be an int in [1, 1000] or None, got {self.num_steps!r}")
        if self.output_mode not in OUTPUT_MODES:
            raise ValueError(f"output_mode must be one of {OUTPUT_MODES}, got {self.output_mode!r}")
        if self.chunk_blending is not None and self.chunk_blending not in BLENDINGS:
            raise ValueError(f"chunk_blending must be one of {BLENDINGS}, got {self.chunk_blending!r}")
        if not (1.0 <= self.control_rate_hz <= 1000.0):
            raise ValueError(f"control_rate_hz must be in [1, 1000], got {self.control_rate_hz}")
        if self.action_horizon is not None and not (isinstance(self.action_horizon, int) and self.action_horizon >= 1):
            raise ValueError(f"action_horizon must be an int >= 1 or None, got {self.action_horizon!r}")
        if not (0.1 <= self.episode_s <= 600.0):
            raise ValueError(f"episode_s must be in [0.1, 600] s, got {self.episode_s}")
        if not (0.01 <= self.rate_factor <= 100.0):
            raise ValueError(f"rate_factor must be in [0.01, 100], got {self.rate_factor}")
        if not (isinstance(self.policy_seed, int) and 0 <= self.policy_seed < 2**31):
            raise ValueError(f"policy_seed must be an int in [0, 2^31), got {self.policy_seed!r}")
        if self.domain_id is not None and not (isinstance(self.domain_id, int) and 0 <= self.domain_id <= 232):
            raise ValueError(f"domain_id must be an int in [0, 232], got {self.domain_id!r}")
        if self.startup_timeout_s <= 0:
            raise ValueError(f"startup_timeout_s must be > 0, got {self.startup_timeout_s}")


def default_domain_id() -> int:
    """A ROS domain for this process's evaluation (201..230, derived from the pid)."""
    return 201 + os.getpid() % 30


# --------------------------------------------------------------------------- results
@dataclass
class EpisodeRecord:
    episode: int  # sim episode index
    seed: int
    success: bool
    mode: str
    final_distance: float
    target: List[float]  # [2] m
    fingertip: List[List[float]]  # [N, 2] m, sampled every PATH_PERIOD_S
    commands: int  # commands received during the episode
    nonfinite_commands: int
    wall_duration_s: float  # header-stamp (ROS/wall) span; > episode_s when the sim fell behind real time
    collided: bool = False  # obstacle variant: the fingertip touched the post (the episode failed)


@dataclass
class EvalResult:
    """Outcome of :func:`run_episodes`; :meth:`to_dict` is the ``--json`` document."""

    model: str
    kind: str
    sampler: str
    num_steps: Optional[int]
    episodes: int
    success_rate: float
    mode_histogram: Dict[str, int]
    mode_fraction: Dict[str, float]
    latency_ms: Dict[str, Optional[float]]
    command_jitter_ms: Dict[str, Optional[float]]
    per_episode: List[EpisodeRecord]
    machine: Dict[str, object]
    timestamp: str
    chunk_age_ms: Dict[str, Optional[float]] = field(default_factory=dict)
    settings: Dict[str, object] = field(default_factory=dict)
    commands: Dict[str, int] = field(default_factory=dict)
    sim_stats: Dict[str, int] = field(default_factory=dict)
    policy_diagnostics: Dict[str, object] = field(default_factory=dict)
    wall_s: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self, indent: int = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def summary_line(self) -> str:
        h = self.mode_histogram
        return (f"{self.kind}/{self.sampler}{'' if self.num_steps is None else f'-{self.num_steps}'}: "
                f"success {100 * self.success_rate:.1f}% of {self.episodes}, modes up/down/between "
                f"{h['elbow_up']}/{h['elbow_down']}/{h['between']}, latency p50 {_fmt(self.latency_ms.get('p50'))} "
                f"p95 {_fmt(self.latency_ms.get('p95'))} ms, command jitter p99 "
                f"{_fmt(self.command_jitter_ms.get('p99'))} ms")


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.1f}"


def check_schema(doc: dict) -> List[str]:
    """Problems of an eval JSON document (``[]`` = valid); used by tests and ``genpolicy demo``."""
    problems = [f"missing key {k!r}" for k in SCHEMA_KEYS if k not in doc]
    if problems:
        return problems
    n = doc["episodes"]
    if not isinstance(n, int) or n < 0:
        problems.append(f"episodes must be an int >= 0, got {n!r}")
    elif len(doc["per_episode"]) != n:
        problems.append(f"per_episode has {len(doc['per_episode'])} entries for {n} episodes")
    if not (isinstance(doc["success_rate"], (int, float)) and 0.0 <= doc["success_rate"] <= 1.0):
        problems.append(f"success_rate must be in [0, 1], got {doc['success_rate']!r}")
    hist = doc["mode_histogram"]
    if set(hist) != set(MODES):
        problems.append(f"mode_histogram keys must be {list(MODES)}, got {sorted(hist)}")
    elif isinstance(n, int) and sum(hist.values()) != n:
        problems.append(f"mode_histogram sums to {sum(hist.values())}, not {n}")
    if set(doc["mode_fraction"]) != set(MODES):
        problems.append(f"mode_fraction keys must be {list(MODES)}")
    for key, stats in (("latency_ms", ("p50", "p95", "max")), ("command_jitter_ms", ("p50", "p99", "max"))):
        block = doc[key]
        for s in stats:
            v = block.get(s, "missing") if isinstance(block, dict) else "missing"
            if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                problems.append(f"{key}.{s} must be a finite number >= 0 or null, got {v!r}")
    for i, ep in enumerate(doc["per_episode"]):
        for k in ("success", "mode", "final_distance", "fingertip", "seed"):
            if k not in ep:
                problems.append(f"per_episode[{i}] lacks {k!r}")
        if ep.get("mode") not in MODES:
            problems.append(f"per_episode[{i}].mode {ep.get('mode')!r} is not one of {list(MODES)}")
    if not isinstance(doc["machine"], dict):
        problems.append("machine must be an object")
    return problems


def machine_info() -> Dict[str, object]:
    info: Dict[str, object] = {"hostname": platform.node(), "platform": platform.platform(),
                               "processor": platform.processor() or platform.machine(),
                               "cpu_count": os.cpu_count(), "python": platform.python_version()}
    try:
        info["loadavg_1min"] = round(os.getloadavg()[0], 2)  # other work on the machine skews timing
    except OSError:
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:  # noqa: BLE001 - informational only
        pass
    return info


def percentiles(values: Sequence[float], qs: Sequence[str]) -> Dict[str, Optional[float]]:
    """``{"p50": ..., "p99": ..., "max": ...}`` of ``values`` (None when empty)."""
    arr = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    out: Dict[str, Optional[float]] = {}
    for q in qs:
        if arr.size == 0:
            out[q] = None
        elif q == "max":
            out[q] = round(float(arr.max()), 3)
        else:
            out[q] = round(float(np.percentile(arr, float(q[1:]))), 3)
    return out


# --------------------------------------------------------------------------- the policy node process
def policy_node_command(cfg: EvalConfig, use_sim_time: bool = False) -> List[str]:
    """``python -m genpolicy_ros.cli node --ros-args -p ...`` for this evaluation."""
    return node_command({
        "model_path": str(Path(cfg.model_dir).resolve()),
        "output_mode": cfg.output_mode,
        "control_rate_hz": float(cfg.control_rate_hz),
        "seed": cfg.policy_seed,
        "backend": cfg.backend,
        "device": cfg.device,
        "sampler": cfg.sampler,
        "num_steps": cfg.num_steps,
        "action_horizon": cfg.action_horizon,
        "chunk_blending": cfg.chunk_blending,
        "use_sim_time": True if use_sim_time else None,
    })


# --------------------------------------------------------------------------- the evaluator
class _Evaluator:
    """Evaluator-side node state: subscriptions filled by the executor thread."""

    def __init__(self, context, output_mode: str, control_rate_hz: float):
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
        self.states: List[tuple] = []  # (stamp ns, shoulder, elbow)
        self.command_times: List[float] = []  # monotonic arrival, current episode
        self.jitter_ms: List[float] = []
        self.commands = 0
        self.nonfinite = 0
        self.episode_commands = 0
        self.episode_nonfinite = 0
        self.recording = False
        self.diagnostics: List[dict] = []
        self.chunk_age_ms: List[float] = []
        qos = command_qos(depth=50)
        self.node.create_subscription(String, f"/{SIM_NODE}/episode", self._on_episode, qos)
        self.node.create_subscription(JointState, "joint_states", self._on_state, qos)
        if output_mode == "joint_trajectory":
            self._subscribe_commands(JointTrajectory, "joint_trajectory_controller/joint_trajectory",
                                     self._trajectory_values, qos)
        else:
            self._subscribe_commands(Float64MultiArray, "forward_position_controller/commands",
                                     lambda msg: np.asarray(msg.data, dtype=np.float64), qos)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, qos)
        self.node.create_subscription(JointTrajectory, f"/{POLICY_NODE}/action_chunk", self._on_chunk, qos)
        self.change_state = self.node.create_client(ChangeState, f"/{POLICY_NODE}/change_state")
        self.reset = self.node.create_client(Trigger, f"/{SIM_NODE}/reset")
        self.start_from_measured = self.node.create_client(Trigger, f"/{POLICY_NODE}/start_from_measured")
        self._Trigger = Trigger
        self._ChangeState = ChangeState

    # ---------------------------------------------------------------- callbacks
    def _on_episode(self, msg) -> None:
        with self.lock:
            self.episodes.append(json.loads(msg.data))

    def _on_state(self, msg) -> None:
        try:
            idx = [list(msg.name).index(n) for n in ALL_JOINTS[:2]]
        except ValueError:
            return
        stamp = int(msg.header.stamp.sec) * NS_PER_S + int(msg.header.stamp.nanosec)
        with self.lock:
            self.states.append((stamp, float(msg.position[idx[0]]), float(msg.position[idx[1]])))

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
        t = time.monotonic() if received_s is None else received_s
        with self.lock:
            if not self.recording:
                return
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
        return np.array([p for pt in msg.points for p in pt.positions], dtype=np.float64)

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            if status.name.startswith(f"{POLICY_NODE}:"):
                values = {kv.key: kv.value for kv in status.values}
                with self.lock:
                    self.diagnostics.append(values)

    def _on_chunk(self, msg) -> None:
        now_ns = self.node.get_clock().now().nanoseconds
        stamp = int(msg.header.stamp.sec) * NS_PER_S + int(msg.header.stamp.nanosec)
        if stamp > 0:
            with self.lock:
                self.chunk_age_ms.append((now_ns - stamp) / 1e6)

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
            self.episode_commands = 0
            self.episode_nonfinite = 0
            self.recording = True

    def end_episode(self) -> tuple:
        with self.lock:
            self.recording = False
            return self.episode_commands, self.episode_nonfinite

    def fingertip_path(self, start_ns: int, end_ns: int) -> List[List[float]]:
        with self.lock:
            rows = [s for s in self.states if start_ns <= s[0] <= end_ns]
            self.states = [s for s in self.states if s[0] > end_ns]
        out, next_ns = [], start_ns
        for stamp, q0, q1 in rows:
            if stamp >= next_ns or stamp == rows[-1][0]:
                tip = forward_kinematics(np.array([q0, q1]))  # [2]
                out.append([round(float(tip[0]), 5), round(float(tip[1]), 5)])
                next_ns = stamp + int(PATH_PERIOD_S * NS_PER_S)
        return out

    def states_after(self, stamp_ns: int) -> int:
        with self.lock:
            return sum(1 for s in self.states if s[0] > stamp_ns)


def _wait(predicate, timeout_s: float, what: str, period: float = 0.005) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(period)


def _resolve_sampler(cfg: EvalConfig, model_cfg) -> tuple:
    if model_cfg.kind == "regression":
        return "regression", None
    sampler = cfg.sampler or model_cfg.default_sampler
    return sampler, (cfg.num_steps if cfg.num_steps is not None else 10)  # 10 = the node's default


def run_episodes(model_dir, episodes: int, seed: int = 0, sampler: Optional[str] = None,
                 num_steps: Optional[int] = None, output_mode: str = "joint_trajectory",
                 chunk_blending: Optional[str] = None, **kwargs) -> EvalResult:
    """Run ``episodes`` closed-loop episodes of the model over ROS 2; see the module docstring.

    Further keyword arguments are :class:`EvalConfig` fields (``episode_s``,
    ``rate_factor``, ``domain_id``, ``control_rate_hz``, ``progress``, ...).
    """
    cfg = EvalConfig(model_dir=str(model_dir), episodes=episodes, seed=seed, sampler=sampler,
                     num_steps=num_steps, output_mode=output_mode, chunk_blending=chunk_blending, **kwargs)
    return evaluate(cfg)


def evaluate(cfg: EvalConfig) -> EvalResult:
    """:func:`run_episodes` with a ready :class:`EvalConfig`."""
    import rclpy
    from lifecycle_msgs.msg import Transition
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter

    from ..core.checkpoint import read_model_config
    from .node import SimNode

    model_cfg, _ = read_model_config(cfg.model_dir)
    sampler, steps = _resolve_sampler(cfg, model_cfg)
    domain_id = cfg.domain_id if cfg.domain_id is not None else default_domain_id()
    cameras = tuple(model_cfg.observation.camera_names)
    t_start = time.monotonic()
    machine = machine_info()

    context = Context()
    rclpy.init(context=context, domain_id=domain_id)
    policy = NodeProcess(policy_node_command(cfg), domain_id)
    sim = evaluator = executor = None
    spin_thread = None
    progress = None
    records: List[EpisodeRecord] = []
    try:
        h, w = model_cfg.observation.image_size
        sim = SimNode(SIM_NODE, context=context, start=False, parameter_overrides=[
            Parameter("seed", value=int(cfg.seed)),
            Parameter("episode_s", value=float(cfg.episode_s)),
            Parameter("camera_rate_hz", value=(1.0 / model_cfg.horizon.dt) if cameras else 0.0),
            Parameter("image_height", value=int(h)),
            Parameter("image_width", value=int(w)),
            Parameter("publish_clock", value=False),
            Parameter("rate_factor", value=float(cfg.rate_factor)),
            Parameter("auto_reset", value=False),
            Parameter("obstacle", value=bool(cfg.obstacle)),
        ])
        evaluator = _Evaluator(context, cfg.output_mode, cfg.control_rate_hz)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(sim)
        executor.add_node(evaluator.node)
        spin_thread = threading.Thread(target=executor.spin, name="genpolicy-eval-spin", daemon=True)
        spin_thread.start()

        # The policy node: wait for its lifecycle service, then configure (loads the model).
        deadline = time.monotonic() + cfg.startup_timeout_s
        while not evaluator.change_state.wait_for_service(timeout_sec=0.5):
            if not policy.alive() or time.monotonic() > deadline:
                raise RuntimeError("the policy node did not start:\n" + policy.log_tail())
        if not evaluator.transition(Transition.TRANSITION_CONFIGURE, timeout_s=cfg.startup_timeout_s):
            raise RuntimeError("configuring the policy node failed:\n" + policy.log_tail())
        sim.start()

        if cfg.progress:
            from tqdm import tqdm

            progress = tqdm(total=cfg.episodes, desc=f"eval {Path(cfg.model_dir).name}", unit="episode")
        episode_budget_s = 30.0 + 4.0 * cfg.episode_s / cfg.rate_factor
        for i in range(1, cfg.episodes + 1):
            records.append(_one_episode(i, sim, evaluator, episode_budget_s, policy))
            if progress is not None:
                progress.update(1)
                ok = sum(r.success for r in records)
                progress.set_postfix(success=f"{ok}/{len(records)}")
        time.sleep(0.05)  # the policy node stays inactive; it is shut down with the process
        with evaluator.lock:
            diagnostics = list(evaluator.diagnostics)
            jitter = list(evaluator.jitter_ms)
            ages = list(evaluator.chunk_age_ms)
            totals = {"received": evaluator.commands, "nonfinite": evaluator.nonfinite}
        sim_stats = {k: int(v) for k, v in sim.stats.items()}
    finally:
        if progress is not None:
            progress.close()
        policy.stop()
        if executor is not None:
            executor.shutdown(timeout_sec=2.0)
        if spin_thread is not None:
            spin_thread.join(2.0)
        for node in (evaluator.node if evaluator else None, sim):
            if node is not None:
                node.destroy_node()
        rclpy.try_shutdown(context=context)

    hist = {m: sum(r.mode == m for r in records) for m in MODES}
    n = len(records)
    return EvalResult(
        model=str(Path(cfg.model_dir).resolve()), kind=model_cfg.kind, sampler=sampler, num_steps=steps,
        episodes=n, success_rate=round(sum(r.success for r in records) / max(n, 1), 4),
        mode_histogram=hist, mode_fraction={m: round(c / max(n, 1), 4) for m, c in hist.items()},
        latency_ms=_latency_from_diagnostics(diagnostics),
        command_jitter_ms=percentiles(jitter, ("p50", "p99", "max")),
        per_episode=records, machine=dict(machine, loadavg_1min_end=machine_info().get("loadavg_1min")),
        timestamp=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        chunk_age_ms=percentiles(ages, ("p50", "p95", "max")),
        settings={"seed": cfg.seed, "policy_seed": cfg.policy_seed, "output_mode": cfg.output_mode,
                  "chunk_blending": _last(diagnostics, "chunk_blending", cfg.chunk_blending),
                  "action_horizon_effective": _last(diagnostics, "action_horizon", cfg.action_horizon),
                  "control_rate_hz": cfg.control_rate_hz,
                  "action_horizon": cfg.action_horizon, "episode_s": cfg.episode_s,
                  "rate_factor": cfg.rate_factor, "backend": cfg.backend, "device": cfg.device,
                  "domain_id": domain_id, "cameras": list(cameras),
                  "jitter_clock": evaluator.jitter_clock, "obstacle": bool(cfg.obstacle),
                  "collisions": sum(r.collided for r in records)},
        commands=totals, sim_stats=sim_stats, policy_diagnostics=_diagnostics_summary(diagnostics), wall_s=round(time.monotonic() - t_start, 2))


def _one_episode(index: int, sim, ev: _Evaluator, budget_s: float, policy: NodeProcess) -> EpisodeRecord:
    from lifecycle_msgs.msg import Transition

    reset_at_ns = sim.now_ns()
    ev.reset_sim()
    # Two joint states of the new episode (stamped after the reset) before activating.
    _wait(lambda: ev.states_after(reset_at_ns) >= 2, 10.0, f"joint states of episode {index}")
    ev.begin_episode()
    if not ev.transition(Transition.TRANSITION_ACTIVATE):
        raise RuntimeError(f"activating the policy node failed (episode {index}):\n" + policy.log_tail())

    def finished():
        with ev.lock:
            return any(e["episode"] == index and e["completed"] for e in ev.episodes)

    try:
        _wait(lambda: finished() or not policy.alive(), budget_s, f"the end of episode {index}", period=0.01)
        if not policy.alive():
            raise RuntimeError(f"the policy node exited during episode {index}:\n" + policy.log_tail())
    finally:
        if policy.alive():
            ev.transition(Transition.TRANSITION_DEACTIVATE)
        commands, nonfinite = ev.end_episode()
        time.sleep(0.05)  # the final hold reaches the sim before the next reset
    with ev.lock:
        result = next(e for e in ev.episodes if e["episode"] == index and e["completed"])
    return EpisodeRecord(
        episode=index, seed=int(result["seed"]), success=bool(result["success"]), mode=str(result["mode"]),
        final_distance=float(result["final_distance"]), target=[float(v) for v in result["target"]],
        fingertip=ev.fingertip_path(int(result["start_ns"]), int(result["end_ns"])),
        commands=commands, nonfinite_commands=nonfinite,
        wall_duration_s=round((int(result["end_ns"]) - int(result["start_ns"])) / NS_PER_S, 4),
        collided=bool(result.get("collided", False)))


def _last(reports: List[dict], key: str, default):
    """The value of ``key`` in the newest diagnostics report that has it (as reported)."""
    for r in reversed(reports):
        if r.get(key) not in (None, "", "None"):
            return r[key]
    return default


def _diagnostics_summary(reports: List[dict]) -> Dict[str, object]:
    """Totals of the policy node's per-window counters over the run, and its last report."""
    totals: Dict[str, object] = {}
    for key in ("holds", "drops", "non_finite", "generation_errors", "rejected_messages"):
        values = []
        for r in reports:
            try:
                values.append(int(float(r.get(key, 0))))
            except (TypeError, ValueError):
                pass
        totals[f"{key}_total"] = sum(values)
    reasons = sorted({r.get("hold_reason", "") for r in reports} - {""})
    totals["hold_reasons"] = reasons[:10]
    totals["reports"] = len(reports)
    totals["last"] = dict(reports[-1]) if reports else {}
    return totals


def _latency_from_diagnostics(reports: List[dict]) -> Dict[str, Optional[float]]:
    def number(report, key):
        try:
            v = float(report.get(key, "nan"))
        except (TypeError, ValueError):
            return None
        return v if math.isfinite(v) else None

    with_latency = [r for r in reports if number(r, "latency_p50_ms") is not None]
    if not with_latency:
        return {"p50": None, "p95": None, "max": None}
    last = with_latency[-1]
    maxima = [number(r, "latency_max_ms") for r in with_latency]
    maxima = [m for m in maxima if m is not None]
    return {"p50": round(number(last, "latency_p50_ms"), 3),
            "p95": None if number(last, "latency_p95_ms") is None else round(number(last, "latency_p95_ms"), 3),
            "max": round(max(maxima), 3) if maxima else None}


# --------------------------------------------------------------------------- the MSE baseline
def dataset_of(model_dir) -> Optional[str]:
    """The training data set recorded in a model's config.json metadata (``genpolicy train``)."""
    from ..core.checkpoint import read_model_config

    _, doc = read_model_config(model_dir)
    path = (doc.get("metadata") or {}).get("dataset")
    return path if path and Path(path, "dataset.json").is_file() else None


def ensure_regression_baseline(model_dir, out_dir, data: Optional[str] = None, steps: Optional[int] = None,
                               progress: bool = True) -> str:
    """The MSE regression baseline of ``model_dir``: ``out_dir`` if it already holds a
    regression model, else trained there with ``genpolicy train --kind regression`` on the
    same data set (``data`` or the one in MODEL's metadata), network, encoder and horizons."""
    from ..core.checkpoint import read_model_config

    out = Path(out_dir)
    if (out / "config.json").is_file():
        cfg, _ = read_model_config(out)
        if cfg.kind != "regression":
            raise ValueError(f"{out} holds a {cfg.kind} model, not a regression baseline")
        return str(out)
    data = data or dataset_of(model_dir)
    if data is None:
        raise ValueError(f"{model_dir}: its config.json does not name an existing training data set; "
                         "pass --data DIR (or --mse-model DIR with a trained baseline)")
    model_cfg, _ = read_model_config(model_dir)
    section = model_cfg.to_dict()
    policy = {k: section[k] for k in ("horizon", "network", "encoder", "seed")}
    out.mkdir(parents=True, exist_ok=True)
    config_file = out / "baseline_config.json"
    config_file.write_text(json.dumps({"policy": policy, "train": {}}, indent=2))
    cmd = [sys.executable, "-m", "genpolicy_ros.cli", "train", "--data", str(data), "--kind", "regression",
           "--out", str(out), "--config", str(config_file), "--no-progress" if not progress else "--progress"]
    if steps is not None:
        cmd += ["--steps", str(int(steps))]
    done = subprocess.run(cmd)
    if done.returncode != 0 or not (out / "config.json").is_file():
        raise RuntimeError(f"training the regression baseline failed (exit {done.returncode}): {' '.join(cmd)}")
    return str(out)


def default_baseline_dir(model_dir) -> Path:
    """``models/reach_mse`` next to a model in ``models/``, else ``<MODEL>_mse``."""
    model = Path(model_dir).resolve()
    sibling = model.parent / "reach_mse"
    if sibling.is_dir() and (sibling / "config.json").is_file():
        return sibling
    return model.with_name(model.name + "_mse")
