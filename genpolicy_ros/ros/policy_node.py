r"""`PolicyNode`: the genpolicy lifecycle node (default name ``genpolicy``) — lifecycle and
parameters. Its inputs live in ``node_inputs.py``, its outputs in ``node_output.py``, its
/diagnostics numbers in ``node_status.py``; the ROS-free heart is
:class:`~genpolicy_ros.runtime.engine.PolicyEngine` (architecture.md, "ROS 2 interface")::

    joint_states, <inputs>, camera/... ─► ObservationInputs ─► PolicyEngine.observe_*
                                                                     │
       RateLoop thread (absolute deadlines) ── tick(now = ROS time) ─┴─► CommandOutput
       GenerationWorker child process (sampling, torch)                   (lifecycle publishers)
       /diagnostics (steady-clock timer, 1 Hz)    ~/pause, ~/resume, ~/start_from_measured

This process never imports torch nor loads the weights: configure reads ``config.json``
(core/model_dir.py) and the generation child owns torch, the weights and the device.

Lifecycle (create/destroy symmetry, ros2/demos' lifecycle talker):

- **configure**: read parameters → read the model's config.json (never unpickles) → check
  it against ``joint_names`` (when set; a mismatch fails the transition naming it, the node
  stays alive; when unset the parameter then shows the model's names) → start the generation
  child and wait for its warm-up → create the lifecycle publishers, subscriptions, services
  and the diagnostics timer.
- **activate**: ``engine.reset()`` (fresh history and plan; the safety filter keeps the last
  command, so the first action continues from it), then ``super().on_activate`` enables the
  publishers and inputs, then the executor thread starts.
- **deactivate**: stop the executor, publish the braking stop and a final hold, then
  ``super().on_deactivate`` disables the publishers.
- **cleanup** / **shutdown** / **error**: destroy what configure created, close the child.
  Cleanup also forgets the last command: the next activation starts from a confirmed
  measured position.

Threads: the tick runs in a RateLoop thread and publishes from there; generation in a separate
*process* (a same-process thread pushed p99 lateness from 0.2 to 67 ms, references.md), placed by
``cpu_split`` / ``worker_niceness`` (runtime/cpu_placement.py). Subscriptions, services and the
diagnostics timer run in the executor's thread, each in its own callback group.

Parameters: declared from :func:`~genpolicy_ros.ros.parameters.declaration_list`. The
on-set callback only *validates* (all or nothing, plus checks that need the model: sampler
vs model kind, DDIM steps vs training steps) and hands the validated values over; the
executor thread applies them at its next tick (``engine.update_settings``: sampler settings
at the next chunk, limits at the next tick); ``control_rate_hz`` also re-times the executor.
Non-★ parameters are read-only while configured (cleanup first).

Time: ``now`` and header stamps are seconds of the node's clock (ROS time: wall, or
``/clock`` with ``use_sim_time``, when the command loop also ticks on ``/clock``: one tick
per simulated period, ros/sim_time.py); the engine's staleness watchdog also runs on
``time.monotonic`` so a stopped ``/clock`` is detected (reliability.md row 14). The
diagnostics timer runs on the steady clock for the same reason.
"""
from __future__ import annotations

import math
import threading
import time
from typing import Any, Dict, Optional

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.lifecycle import Node as LifecycleNode
from rclpy.lifecycle import State, TransitionCallbackReturn
from rclpy.parameter import Parameter

from genpolicy_ros.model_paths import resolve_model_path
from genpolicy_ros.runtime.cpu_placement import ProcessPlacement
from genpolicy_ros.runtime.engine import ModelInfo, PolicyEngine
from genpolicy_ros.runtime.latency import LatencyTracker
from genpolicy_ros.runtime.rate_loop import RateLoop

from . import topics
from .diagnostics import build_diagnostic_array
from .node_inputs import InputSettings, ObservationInputs, camera_topics  # noqa: F401 (re-exported)
from .node_output import ACTION_CHUNK_TOPIC, FORWARD_TOPIC, TRAJECTORY_TOPIC, CommandOutput  # noqa: F401
from .node_services import NodeServices
from .node_settings import backend_precheck, engine_settings, input_settings, model_checks
from .node_status import StatusReporter
from .parameters import SPECS, NodeParams, declaration_list, validate_ros_parameters
from .qos import command_qos
from .sim_time import SimTimeLoop

NODE_NAME = topics.POLICY_NODE
JOINT_STATES_TOPIC = topics.JOINT_STATES
DIAGNOSTICS_TOPIC = topics.DIAGNOSTICS
_WARN_THROTTLE_S = 2.0
class PolicyNode(NodeServices, LifecycleNode):
    """The policy lifecycle node; see the module docstring.

    Args:
        node_name: default ``genpolicy``.
        diagnostics_period_s: /diagnostics period (1 s; tests use less).
        warmup_timeout_s: how long configure waits for the generation child (load, build,
            warm-up) before failing.
        generation_threads: torch / ONNX Runtime threads in the generation child.
        **kwargs: passed to ``rclpy.lifecycle.Node`` (namespace, context, cli_args,
            parameter_overrides, ...).
    """

    def __init__(self, node_name: str = NODE_NAME, *, diagnostics_period_s: float = 1.0,
                 warmup_timeout_s: float = 120.0, generation_threads: int = 1, **kwargs):
        super().__init__(node_name, **kwargs)
        if not (isinstance(diagnostics_period_s, (int, float)) and math.isfinite(diagnostics_period_s)
                and diagnostics_period_s > 0):
            raise ValueError(f"diagnostics_period_s must be a finite number > 0, got {diagnostics_period_s!r}")
        if not (isinstance(warmup_timeout_s, (int, float)) and warmup_timeout_s > 0):
            raise ValueError(f"warmup_timeout_s must be > 0, got {warmup_timeout_s!r}")
        if isinstance(generation_threads, bool) or not isinstance(generation_threads, int) or generation_threads < 1:
            raise ValueError(f"generation_threads must be an int >= 1, got {generation_threads!r}")
        self._diagnostics_period_s = float(diagnostics_period_s)
        self._warmup_timeout_s = float(warmup_timeout_s)
        self._generation_threads = generation_threads

        # Parameters: the contract table (writable descriptors; read-only is gated by the
        # lifecycle state in the on-set callback) + `autostart` for `genpolicy node`.
        self.declare_parameters("", declaration_list(static_read_only=False))
        self.declare_parameter("autostart", False, ParameterDescriptor(
            description="genpolicy node: configure and activate at start", read_only=True))
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self._sensor_group = MutuallyExclusiveCallbackGroup()
        self._image_group = MutuallyExclusiveCallbackGroup()
        self._service_group = MutuallyExclusiveCallbackGroup()
        self._diagnostics_group = MutuallyExclusiveCallbackGroup()
        self._steady_clock = Clock(clock_type=ClockType.STEADY_TIME)
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, command_qos())
        self._status = StatusReporter()
        # use_sim_time: the command loop ticks on /clock (one tick per period of simulated
        # time, however fast or slow the simulator runs), not on the wall clock.
        self._sim_time = SimTimeLoop(self) if self.get_clock().ros_time_is_active else None

        self._state_label = "unconfigured"
        self._params: Optional[NodeParams] = None  # applied values (configure / tick)
        self._staged: Optional[NodeParams] = None  # validated, not yet applied
        self._staged_lock = threading.Lock()
        self._joint_names_from_model = False  # joint_names was [] and shows the model's names
        self._reset_runtime()

    # ================================================================== small helpers
    def _reset_runtime(self) -> None:
        self._config = None  # PolicyConfig of the model (from config.json)
        self._model: Optional[ModelInfo] = None
        self._model_dir = ""
        self._worker = None
        self._engine: Optional[PolicyEngine] = None
        self._loop: Optional[RateLoop] = None
        self._lockstep = False  # enter_lockstep(): the caller drives tick_once()
        self._inputs: Optional[ObservationInputs] = None
        self._output: Optional[CommandOutput] = None
        self._input_settings = InputSettings()
        self._diagnostics_timer = None
        self._subscriptions_made: list = []
        self._services_made: list = []

    def _ros_now(self) -> float:
        """Seconds of the node's clock (ROS time; /clock with use_sim_time)."""
        return self.get_clock().now().nanoseconds * 1e-9

    def _current_values(self) -> Dict[str, Any]:
        return {name: self.get_parameter(name).value for name in SPECS}

    @property
    def _active(self) -> bool:
        return self._output is not None and self._output.is_activated

    @property
    def lifecycle_state(self) -> str:
        """unconfigured / inactive / active / finalized (tracked by the transitions)."""
        return self._state_label

    @property
    def engine(self) -> Optional[PolicyEngine]:
        return self._engine

    def sampler_resolved(self) -> str:
        """The sampler the chunks use: ``auto`` resolved to the model's default."""
        if self._config is None or self._params is None:
            return ""
        if self._params.sampler != "auto":
            return self._params.sampler
        return f"{self._config.default_sampler} (auto: the model's default)"

    # ================================================================== lockstep (replay, tests)
    def enter_lockstep(self) -> None:
        """Stop the command loop's own thread (the node must be active); from now on the
        caller drives the node one period at a time with :meth:`tick_once` — deterministic
        replay does this against a bag's ``/clock``. Deactivate/activate returns to
        free-running. Raises RuntimeError when there is no running loop to take over."""
        loop = self._loop
        if loop is None or self._engine is None:
            raise RuntimeError("enter_lockstep: the node is not configured and active")
        if not loop.stop(timeout=2.0):
            raise RuntimeError("enter_lockstep: the command loop thread did not stop")
        self._lockstep = True

    def tick_once(self) -> None:
        """One command period in the calling thread (after :meth:`enter_lockstep`), at once:
        the caller owns time (a replay steps ``/clock`` itself)."""
        if not self._lockstep or self._loop is None:
            raise RuntimeError("tick_once: call enter_lockstep() first")
        self._loop.run_ticks(1, wait=False)

    def executor_stats(self) -> Dict[str, Any]:
        """The command loop's counters (RateLoop.stats: ticks, missed_ticks, lateness) plus
        ``published`` (commands published since configure); ``{}`` when unconfigured."""
        loop = self._loop
        if loop is None:
            return {}
        return dict(loop.stats(), published=self._output.published if self._output else 0)

    # ================================================================== parameters
    def _model_checks(self, values: Dict[str, Any]) -> str:
        """Checks that need the model ('' = fine)."""
        return model_checks(self._config, values) if self._config is not None else ""

    def _on_set_parameters(self, parameters):
        """Validation only; the validated set is applied by the executor at its next tick."""
        configured = self._config is not None
        result, new_values = validate_ros_parameters(self._current_values(), parameters, configured=configured)
        if result.successful and configured:
            reason = self._model_checks(new_values)
            if reason:
                result.successful, result.reason = False, reason
        if not result.successful:
            self.get_logger().warning(f"parameter change rejected: {result.reason}")
            return result
        if configured and any(p.name in SPECS for p in parameters):
            params = NodeParams.from_values(new_values)
            with self._staged_lock:
                self._staged = params
            if self._loop is not None and params.control_rate_hz != self._loop.rate_hz:
                self._loop.set_rate(params.control_rate_hz)  # takes effect after the current tick
            if not self._active:  # no tick running: apply now (nothing is executing)
                self._apply_staged()
        return result

    def _apply_staged(self) -> None:
        with self._staged_lock:
            params, self._staged = self._staged, None
        if params is None or self._engine is None:
            return
        try:
            self._engine.update_settings(engine_settings(params))
        except ValueError as exc:  # validated already; a derived config may still refuse
            self.get_logger().error(f"parameters not applied: {exc}")
            return
        self._input_settings = input_settings(params, self._config)
        self._params = params

    # ================================================================== lifecycle
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        log = self.get_logger()
        t0 = time.monotonic()
        try:
            params = NodeParams.from_values(self._current_values())
        except ValueError as exc:
            log.error(f"configure failed: invalid parameter: {exc}")
            return TransitionCallbackReturn.FAILURE
        try:
            ok = self._load_model(params)
            if ok:
                ok = self._start_worker(params)
            if ok:
                self._create_interfaces()
        except Exception as exc:  # noqa: BLE001 - any failure leaves the node unconfigured and alive
            log.error(f"configure failed: {type(exc).__name__}: {exc}")
            ok = False
        if not ok:
            self._destroy_runtime()
            return TransitionCallbackReturn.FAILURE
        self._state_label = "inactive"
        info = self._worker.info
        log.info(f"configured in {time.monotonic() - t0:.2f} s: model {self._model_dir} ({self._config.kind}, "
                 f"joints {list(self._output.out_names)}, T_o={self._model.T_o} T_p={self._model.T_p} "
                 f"T_a={self._model.T_a} dt={self._model.dt}), sampler {self.sampler_resolved()}, "
                 f"backend {info.get('backend', '?')} on {info.get('device', params.device)}, "
                 f"output {params.output_mode}")
        return TransitionCallbackReturn.SUCCESS

    def _load_model(self, params: NodeParams) -> bool:
        from genpolicy_ros.core.model_dir import (
            IncompatibleModelError,
            ModelLoadError,
            check_compatible,
            read_model_config,
        )

        log = self.get_logger()
        try:
            model_dir = resolve_model_path(params.model_path)
            cfg, _ = read_model_config(model_dir)  # config.json only: no torch, no weights here
        except (ModelLoadError, FileNotFoundError, OSError, ValueError) as exc:
            log.error(f"configure failed: cannot load the model: {exc}")
            return False
        if params.joint_names:
            try:
                check_compatible(cfg, joint_names=params.joint_names)
            except IncompatibleModelError as exc:
                log.error(f"configure failed: {exc} (parameter joint_names)")
                return False
        else:  # show the names in use: `ros2 param get /genpolicy joint_names`
            self.set_parameters([Parameter("joint_names", value=list(cfg.action.joint_names))])
            self._joint_names_from_model = True
            params = NodeParams.from_values(self._current_values())
        self._config = cfg
        self._model_dir = model_dir
        self._model = ModelInfo.from_policy_config(cfg)
        reason = self._model_checks(self._current_values())
        if reason:
            self._config = None
            log.error(f"configure failed: {reason} (parameters sampler / num_steps)")
            return False
        return True

    def _start_worker(self, params: NodeParams) -> bool:
        from genpolicy_ros.runtime.generation_worker import GenerationWorker, WorkerConfig, WorkerError

        log = self.get_logger()
        settings = engine_settings(params)
        why = backend_precheck(params.backend, params.device)
        if why:  # fail fast here rather than after several child restarts
            log.error(f"configure failed: backend {params.backend} is not available on {params.device}: {why}")
            return False
        latency = LatencyTracker(warmup=0, initial_estimate_s=2 * self._model.dt)
        self._placement = ProcessPlacement(params.cpu_split)
        worker_cfg = WorkerConfig(model_dir=str(self._model_dir), backend=params.backend,
                                  device=params.device, precision=params.precision,
                                  num_threads=self._generation_threads, settings=settings.sampler_settings(),
                                  emulate_latency_ms=params.emulate_latency_ms,
                                  **self._placement.worker_kwargs(params.worker_niceness))
        if params.emulate_latency_ms > 0:
            log.warning(f"LATENCY EMULATION ON: every chunk takes at least {params.emulate_latency_ms:g} ms "
                        "(parameter emulate_latency_ms; for studying slow models, never on a robot)")
        self._worker = GenerationWorker(worker_cfg, latency_tracker=latency, clock=self._ros_now,
                                        on_progress=lambda line: log.info(f"generation: {line}"))
        t = time.monotonic()
        log.info(f"starting the generation process (backend {params.backend}, device {params.device}): "
                 "loading the model and preparing the sampler; a first start may export an engine "
                 "(`genpolicy export MODEL` ahead of time makes it fast)")
        if not self._worker.wait_ready(self._warmup_timeout_s):
            errors = []
            while True:
                event = self._worker.poll()
                if event is None:
                    break
                if isinstance(event, WorkerError):
                    errors.append(event.message)
            why = errors[-1] if errors else f"not ready after {self._warmup_timeout_s:.0f} s"
            log.error(f"configure failed: generation worker did not start: {why}")
            return False
        log.info(f"generation worker ready in {time.monotonic() - t:.2f} s: {self._worker.info.get('backend')}")
        for line in self._placement.apply_here(self._worker.info.get("placement"), params.gc_freeze):
            log.info(line)
        self._engine = PolicyEngine(self._model, self._worker, settings, clock=self._ros_now,
                                    steady_clock=time.monotonic, latency=latency)
        self._params = params
        self._input_settings = input_settings(params, self._config)
        timing = self._sim_time.loop_timing() if self._sim_time is not None else {}
        self._loop = RateLoop(params.control_rate_hz, self._on_tick, name="genpolicy-executor",
                              on_error=self._on_tick_error, **timing)
        return True

    def _create_interfaces(self) -> None:
        params = self._params
        model_joints = tuple(self._config.action.joint_names)
        out_names = tuple(params.joint_names) if params.joint_names else model_joints
        out_index = np.array([model_joints.index(j) for j in out_names])  # [D_a] model joint of each output
        self._output = CommandOutput(self, out_names, out_index, params.output_mode == "joint_trajectory")
        kinds = {name: spec["type"] for name, spec in self._config.observation.state_inputs.items()}
        self._inputs = ObservationInputs(self, self._engine, self._config.observation.image_size, kinds,
                                         lambda: self._input_settings, (self._sensor_group, self._image_group))
        self.add_managed_entity(self._inputs)
        self._subscriptions_made = self._inputs.create_subscriptions()
        self._services_made = self._create_services(self._service_group)
        self._status.restart_window()
        self._diagnostics_timer = self.create_timer(self._diagnostics_period_s, self._publish_diagnostics,
                                                    callback_group=self._diagnostics_group,
                                                    clock=self._steady_clock)

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        self._apply_staged()
        self._engine.reset()
        self._output.started = False
        self._lockstep = False
        result = super().on_activate(state)  # enables the lifecycle publishers and the inputs
        self._loop.start()
        self._state_label = "active"
        self.get_logger().info(f"active: executing at {self._loop.rate_hz:g} Hz")
        return result

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._stop_executing()
        self._state_label = "inactive"
        self.get_logger().info("inactive: holding the last command")
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._destroy_runtime()
        self._state_label = "unconfigured"
        self.get_logger().info("cleaned up")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self._destroy_runtime()
        self._state_label = "finalized"
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: State) -> TransitionCallbackReturn:
        self.get_logger().error("lifecycle error: releasing resources, back to unconfigured")
        self._destroy_runtime()
        self._state_label = "unconfigured"
        return TransitionCallbackReturn.SUCCESS

    def _stop_executing(self) -> None:
        """Stop the executor thread, then publish the braking stop and the final hold."""
        if self._loop is not None and self._loop.running:
            if not self._loop.stop(timeout=2.0):
                self.get_logger().error("executor thread did not stop within 2 s")
        if self._output is not None and self._params is not None:
            self._output.stop(self._engine, self._ros_now, 1.0 / self._params.control_rate_hz)

    def _destroy_runtime(self) -> None:
        """Undo configure, in reverse order; every step runs even if one fails (e.g. the
        context is already shut down after Ctrl-C) so the generation child is always closed."""
        steps = [self._stop_executing]
        if self._inputs is not None:
            # rclpy has no public "remove managed entity"; the mixin keeps them in a set.
            steps.append(lambda e=self._inputs: self._managed_entities.discard(e))
        if self._diagnostics_timer is not None:
            steps.append(lambda t=self._diagnostics_timer: self.destroy_timer(t))
        steps += [lambda s=s: self.destroy_subscription(s) for s in self._subscriptions_made]
        steps += [lambda s=s: self.destroy_service(s) for s in self._services_made]
        if self._output is not None:
            steps.append(self._output.destroy)
        if self._worker is not None:
            steps.append(self._worker.close)
        for step in steps:
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - keep releasing the rest
                self.get_logger().warning(f"cleanup step failed: {type(exc).__name__}: {exc}")
        with self._staged_lock:
            self._staged = None
        self._reset_runtime()
        if self._joint_names_from_model:  # back to "from the model" for the next configure
            self._joint_names_from_model = False
            if not self.context.ok():  # shutting down: nothing will configure again
                return
            try:
                self.set_parameters([Parameter("joint_names", value=[])])
            except Exception as exc:  # noqa: BLE001 - e.g. the context is already shut down
                self.get_logger().warning(f"joint_names not reset: {exc}")

    def destroy_node(self):
        """Stop the executor and the generation child before the node goes away."""
        try:
            self._destroy_runtime()
        finally:
            super().destroy_node()

    # ================================================================== the executor tick
    def _on_tick(self, tick) -> None:
        """RateLoop thread: apply staged settings, tick the engine, publish the command —
        then the slower rest (requesting the next chunk, the ~/action_chunk debug message),
        so that the command leaves at the same instant of every period."""
        if self._staged is not None:
            self._apply_staged()
        engine, output = self._engine, self._output
        if engine is None or output is None:
            return
        result = engine.tick(self._ros_now(), defer_request=True)
        try:
            output.publish_result(result, self._loop.rate_hz ** -1)
        finally:
            engine.run_deferred_request()
        if result.merged_chunk is not None:
            output.publish_chunk(result.merged_chunk)

    def _on_tick_error(self, exc: BaseException, tick) -> None:
        self.get_logger().error(f"executor tick failed: {type(exc).__name__}: {exc}",
                                throttle_duration_sec=_WARN_THROTTLE_S)

    # ================================================================== diagnostics
    def diagnostic_stats(self) -> Dict[str, Any]:
        """The flat numbers behind /diagnostics (rates and counts over the last window)."""
        return self._status.report(
            state=self._state_label, engine=self._engine, inputs=self._inputs, output=self._output,
            loop=self._loop, worker=self._worker, params=self._params, config=self._config,
            model_dir=self._model_dir, sampler_resolved=self.sampler_resolved(), ros_now=self._ros_now())

    def _publish_diagnostics(self) -> None:
        try:
            msg = build_diagnostic_array(self.diagnostic_stats(), stamp=self.get_clock().now().to_msg(),
                                         name=f"{self.get_name()}: policy", hardware_id=self.get_name())
            self._diagnostics_pub.publish(msg)
        except Exception as exc:  # noqa: BLE001 - diagnostics must never take the node down
            self.get_logger().warning(f"/diagnostics not published: {exc}", throttle_duration_sec=_WARN_THROTTLE_S)


__all__ = ["PolicyNode", "NODE_NAME", "TRAJECTORY_TOPIC", "FORWARD_TOPIC", "JOINT_STATES_TOPIC",
           "ACTION_CHUNK_TOPIC", "camera_topics", "resolve_model_path"]
