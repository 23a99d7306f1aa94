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
   (target and start pose from seed ``seed·100003 + i``, the sim's rule) of the task the
   model was trained on (``metadata.task``; see ``tasks/model_task.py``);
2. once the evaluator has seen two joint states of the new episode, it activates the
   policy node (``lifecycle_msgs/srv/ChangeState``; activate resets the node's history and
   plan, so nothing carries over from the previous episode);
3. the sim ends the episode after ``episode_s`` of simulated time (= wall time at
   ``rate_factor`` 1) and publishes ``~/episode`` (success, mode, final distance);
4. the policy node is deactivated (it publishes one final hold) and the next episode starts.

What is measured:

- **success rate and modes** from the sim's ``~/episode`` messages (the task's success
  predicate ``env.evaluate()`` and, where it has them, outcome labels and stages);
- **path** per episode from ``joint_states`` (the task's ``path_xy``, the reach task's
  fingertip), for the plot;
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

Split: :mod:`.eval_probe` (the evaluator node), :mod:`.eval_results` (records, result
document, statistics), :mod:`.eval_baseline` (the MSE baseline); this module runs episodes.
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from ..ros.node_process import NodeProcess, default_domain_id, node_command
from .eval_baseline import dataset_of, default_baseline_dir, ensure_regression_baseline  # noqa: F401 (API)
from .eval_probe import SIM_NODE, Evaluator, wait_for
from .eval_results import (  # noqa: F401 (API)
    SCHEMA_KEYS,
    EpisodeRecord,
    EvalResult,
    check_schema,
    delay_summary,
    diagnostics_summary,
    last_reported,
    latency_from_diagnostics,
    machine_info,
    percentiles,
    plan_seams,
    seam_smoothness,
    stage_statistics,
)

NS_PER_S = 1_000_000_000
OUTPUT_MODES = ("joint_trajectory", "forward_command")
BLENDINGS = ("none", "ensemble", "rtc")


@dataclass(frozen=True)
class EvalConfig:
    """Settings of one evaluation run; validated on construction.

    ``sampler``/``num_steps`` ``None`` = the policy node's defaults (the model's own sampler,
    10 steps). ``seed`` is the sim's seed (targets, start poses); ``policy_seed`` the node's
    sampler seed. ``task``: the registered task to run (None: ``reach``, or ``reach_obstacle``
    with ``obstacle``, the older spelling); ``episode_s`` None = the task's episode length.
    """

    model_dir: str
    episodes: int = 10
    seed: int = 0
    sampler: Optional[str] = None
    num_steps: Optional[int] = None
    output_mode: str = "joint_trajectory"
    chunk_blending: Optional[str] = None  # None = the policy node's default
    rtc_prefix_mode: Optional[str] = None  # hard | guided; None = the node's default
    emulate_latency_ms: float = 0.0  # the node's latency emulation (slow-model study); 0 = off
    control_rate_hz: float = 100.0
    action_horizon: Optional[int] = None
    episode_s: Optional[float] = None
    rate_factor: float = 1.0
    obstacle: bool = False  # = task reach_obstacle
    task: Optional[str] = None
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
        if self.rtc_prefix_mode is not None and self.rtc_prefix_mode not in ("hard", "guided"):
            raise ValueError(f"rtc_prefix_mode must be hard, guided or None, got {self.rtc_prefix_mode!r}")
        if not (isinstance(self.emulate_latency_ms, (int, float)) and 0.0 <= self.emulate_latency_ms <= 10000.0):
            raise ValueError(f"emulate_latency_ms must be in [0, 10000], got {self.emulate_latency_ms!r}")
        if self.chunk_blending is not None and self.chunk_blending not in BLENDINGS:
            raise ValueError(f"chunk_blending must be one of {BLENDINGS}, got {self.chunk_blending!r}")
        if not (1.0 <= self.control_rate_hz <= 1000.0):
            raise ValueError(f"control_rate_hz must be in [1, 1000], got {self.control_rate_hz}")
        if self.action_horizon is not None and not (isinstance(self.action_horizon, int) and self.action_horizon >= 1):
            raise ValueError(f"action_horizon must be an int >= 1 or None, got {self.action_horizon!r}")
        if self.episode_s is not None and not (0.1 <= self.episode_s <= 600.0):
            raise ValueError(f"episode_s must be in [0.1, 600] s or None (the task's), got {self.episode_s}")
        if self.obstacle and self.task not in (None, "reach_obstacle"):
            raise ValueError(f"obstacle=True is task reach_obstacle, not {self.task!r}")
        from ..tasks import get_task

        get_task(self.task_name)  # a registered task
        if not (0.01 <= self.rate_factor <= 100.0):
            raise ValueError(f"rate_factor must be in [0.01, 100], got {self.rate_factor}")
        if self.emulate_latency_ms and self.rate_factor != 1.0:
            # The node (and its emulated latency) runs on wall time; the robot on physics time.
            raise ValueError(f"emulate_latency_ms needs rate_factor 1 (got {self.rate_factor}): the emulated latency "
                             f"is wall time, so the robot would experience {self.rate_factor:g}× the nominal one")
        if not (isinstance(self.policy_seed, int) and 0 <= self.policy_seed < 2**31):
            raise ValueError(f"policy_seed must be an int in [0, 2^31), got {self.policy_seed!r}")
        if self.domain_id is not None and not (isinstance(self.domain_id, int) and 0 <= self.domain_id <= 232):
            raise ValueError(f"domain_id must be an int in [0, 232], got {self.domain_id!r}")
        if self.startup_timeout_s <= 0:
            raise ValueError(f"startup_timeout_s must be > 0, got {self.startup_timeout_s}")


    @property
    def task_name(self) -> str:
        return self.task or ("reach_obstacle" if self.obstacle else "reach")


def policy_node_command(cfg: EvalConfig, use_sim_time: bool = False) -> List[str]:
    """``python -m genpolicy_ros.cli node --ros-args -p ...`` for this evaluation (with the
    task's ``defaults.node_parameters``)."""
    from ..tasks import get_task

    return node_command({
        **dict(get_task(cfg.task_name).defaults.node_parameters),
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
        "rtc_prefix_mode": cfg.rtc_prefix_mode,
        "emulate_latency_ms": float(cfg.emulate_latency_ms) if cfg.emulate_latency_ms else None,
        "use_sim_time": True if use_sim_time else None,
    })


# --------------------------------------------------------------------------- the evaluator


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
    from ..tasks import get_task
    from .node import SimNode

    model_cfg, _ = read_model_config(cfg.model_dir)
    task = get_task(cfg.task_name)
    episode_s = cfg.episode_s if cfg.episode_s is not None else task.defaults.episode_s
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
            Parameter("task", value=task.name),
            Parameter("seed", value=int(cfg.seed)),
            Parameter("episode_s", value=float(episode_s)),
            Parameter("camera_rate_hz", value=(1.0 / model_cfg.horizon.dt) if cameras else 0.0),
            Parameter("image_height", value=int(h)),
            Parameter("image_width", value=int(w)),
            Parameter("publish_clock", value=False),
            Parameter("rate_factor", value=float(cfg.rate_factor)),
            Parameter("auto_reset", value=False),
        ])
        evaluator = Evaluator(context, cfg.output_mode, cfg.control_rate_hz, task.joint_names, task.path_xy)
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
        episode_budget_s = 30.0 + 4.0 * episode_s / cfg.rate_factor
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
            traces = list(evaluator.traces)
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

    modes = task.modes or tuple(sorted({r.mode for r in records}))
    stage_rates, benchmark_rate = stage_statistics(records)
    factors = [r.real_time_factor for r in records if r.real_time_factor is not None]
    hist = {m: sum(r.mode == m for r in records) for m in modes}
    n = len(records)
    return EvalResult(
        model=str(Path(cfg.model_dir).resolve()), kind=model_cfg.kind, sampler=sampler, num_steps=steps,
        episodes=n, success_rate=round(sum(r.success for r in records) / max(n, 1), 4),
        mode_histogram=hist, mode_fraction={m: round(c / max(n, 1), 4) for m, c in hist.items()},
        latency_ms=latency_from_diagnostics(diagnostics),
        command_jitter_ms=percentiles(jitter, ("p50", "p99", "max")),
        per_episode=records, machine=dict(machine, loadavg_1min_end=machine_info().get("loadavg_1min")),
        timestamp=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        chunk_age_ms=percentiles(ages, ("p50", "p95", "max")),
        settings={"seed": cfg.seed, "policy_seed": cfg.policy_seed, "output_mode": cfg.output_mode,
                  "chunk_blending": last_reported(diagnostics, "chunk_blending", cfg.chunk_blending),
                  "action_horizon_effective": last_reported(diagnostics, "action_horizon", cfg.action_horizon),
                  "control_rate_hz": cfg.control_rate_hz, "rtc_prefix_mode": cfg.rtc_prefix_mode,
                  "emulate_latency_ms": cfg.emulate_latency_ms,
                  "action_horizon": cfg.action_horizon, "episode_s": episode_s, "task": task.name,
                  "modes": list(modes),
                  "rate_factor": cfg.rate_factor, "backend": cfg.backend, "device": cfg.device,
                  "domain_id": domain_id, "cameras": list(cameras),
                  "jitter_clock": evaluator.jitter_clock, "obstacle": task.name == "reach_obstacle",
                  "collisions": sum(r.collided for r in records),
                  "real_time_factor_mean": round(sum(factors) / len(factors), 3) if factors else None},
        commands=totals, sim_stats=sim_stats, policy_diagnostics=diagnostics_summary(diagnostics),
        wall_s=round(time.monotonic() - t_start, 2), stage_rates=stage_rates, benchmark_success_rate=benchmark_rate,
        seams={**seam_smoothness(traces, 1.0 / cfg.control_rate_hz), **plan_seams(diagnostics)},
        delay=delay_summary(diagnostics, ages, model_cfg.horizon.dt, cfg.control_rate_hz))


def _one_episode(index: int, sim, ev: Evaluator, budget_s: float, policy: NodeProcess) -> EpisodeRecord:
    from lifecycle_msgs.msg import Transition

    reset_at_ns = sim.now_ns()
    ev.reset_sim()
    # Two joint states of the new episode (stamped after the reset) before activating.
    wait_for(lambda: ev.states_after(reset_at_ns) >= 2, 10.0, f"joint states of episode {index}")
    ev.begin_episode()
    if not ev.transition(Transition.TRANSITION_ACTIVATE):
        raise RuntimeError(f"activating the policy node failed (episode {index}):\n" + policy.log_tail())

    def finished():
        with ev.lock:
            return any(e["episode"] == index and e["completed"] for e in ev.episodes)

    try:
        wait_for(lambda: finished() or not policy.alive(), budget_s, f"the end of episode {index}", period=0.01)
        if not policy.alive():
            raise RuntimeError(f"the policy node exited during episode {index}:\n" + policy.log_tail())
    finally:
        if policy.alive():
            ev.transition(Transition.TRANSITION_DEACTIVATE)
        commands, nonfinite = ev.end_episode()
        time.sleep(0.05)  # the final hold reaches the sim before the next reset
    with ev.lock:
        result = next(e for e in ev.episodes if e["episode"] == index and e["completed"])
    distance = result.get("final_distance")
    return EpisodeRecord(
        episode=index, seed=int(result["seed"]), success=bool(result["success"]), mode=str(result.get("mode", "")),
        final_distance=float(distance) if distance is not None and math.isfinite(distance) else None,
        target=[float(v) for v in result.get("target", [])],
        fingertip=ev.fingertip_path(int(result["start_ns"]), int(result["end_ns"])),
        commands=commands, nonfinite_commands=nonfinite,
        wall_duration_s=round((int(result["end_ns"]) - int(result["start_ns"])) / NS_PER_S, 4),
        collided=bool(result.get("collided", False)), stages=dict(result.get("stages") or {}),
        benchmark_success=None if result.get("benchmark_success") is None else bool(result["benchmark_success"]),
        real_time_factor=result.get("real_time_factor"))
