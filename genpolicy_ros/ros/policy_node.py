r"""`PolicyNode`: the genpolicy lifecycle node (default name ``genpolicy``).

The ROS edge around the ROS-free :class:`~genpolicy_ros.runtime.engine.PolicyEngine`
(architecture.md, "ROS 2 interface of the policy node")::

    joint_states ─┐ (sensor QoS, by name)           ┌─► joint_trajectory_controller/joint_trajectory
    camera/...   ─┤ convert + validate              │   or forward_position_controller/commands
                  ▼                                 │   (reliable, output_mode)
       PolicyEngine.observe_*  ◄── executor threads │
                  │                                 │
       RateLoop thread (absolute deadlines) ── tick(now = ROS time) ──► publish command
                  │                                 └─► ~/action_chunk (debug, merged chunks)
       GenerationWorker child process (sampling, torch)
       /diagnostics (steady-clock timer, 1 Hz)    ~/pause, ~/resume (std_srvs/Trigger)

Lifecycle (create/destroy symmetry, ros2/demos):

- **configure**: read parameters → load the model directory (``load_model_dir``: safetensors,
  integrity hash, never unpickles) → check it against ``joint_names`` (when set; a mismatch
  fails the transition with a message naming it, the node stays alive) → start the
  generation child and wait for its warm-up (``wait_ready``) → create publishers,
  subscriptions, services and the diagnostics timer.
- **activate**: ``engine.reset()`` (fresh history and plan) and start the executor thread.
- **deactivate**: stop the executor, publish one final hold (the last command, zero
  velocity), then publish nothing more.
- **cleanup** / **shutdown** / **error**: destroy what configure created, close the child.

Threads: the executor tick runs in a :class:`~genpolicy_ros.runtime.rate_loop.RateLoop`
thread and publishes from there (rclpy publishing is thread-safe); generation runs in a
separate *process* (references.md: a same-process thread pushes the 100 Hz loop's p99
lateness from 0.2 ms to 67 ms). Subscriptions, services and the diagnostics timer run in
the executor's threads, each in its own callback group.

Parameters: declared from :func:`~genpolicy_ros.ros.parameters.declaration_list`. The
on-set callback only *validates* (``validate_ros_parameters``, all or nothing, plus checks
that need the loaded model: sampler vs model kind, DDIM steps vs training steps) and
hands the validated values over; the executor thread applies them at its next tick by
building a new ``EngineSettings`` (``engine.update_settings``: sampler settings at the next
chunk, limits at the next tick); ``control_rate_hz`` also re-times the executor
(``RateLoop.set_rate``). Non-★ parameters are read-only while configured (cleanup first).

Time: ``now`` and header stamps are seconds of the node's clock (ROS time: wall, or
``/clock`` with ``use_sim_time``); the engine's staleness watchdog also runs on
``time.monotonic`` so a stopped ``/clock`` is detected (reliability.md row 14). The
diagnostics timer runs on the steady clock for the same reason.

Output messages (``joint_names`` order; the model's order when the parameter is unset):

- ``JointTrajectory``: ``header.stamp = 0`` ("start on receipt", ros2_control convention)
  and **one point** at ``time_from_start = 1 / control_rate_hz`` with the command as
  position and ``(command − previous command) · control_rate_hz`` as velocity (cubic
  interpolation in joint_trajectory_controller); a hold has zero velocity.
- ``Float64MultiArray``: the command positions.

Nothing is published before the first action of the policy (reliability.md row 15);
after that, holds (stale inputs, starved plan, pause, disabled) are published as the
held position. Non-finite values are never published (checked again right before
publishing, on top of the safety filter's guarantee).

Camera topics: a model with one camera subscribes ``camera/image_raw`` (Image) and
``camera/image_raw/compressed`` (CompressedImage); with several cameras
``camera/<name>/image_raw`` (+ ``/compressed``) per camera (remap as needed). Per camera
the first transport that delivers frames is used; the other is ignored until the used
one is silent for ``observation_timeout_s``.
"""
from __future__ import annotations

import math
import threading
import time
from collections import Counter
from typing import Any, Dict, Optional, Tuple

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.lifecycle import Node as LifecycleNode
from rclpy.lifecycle import State, TransitionCallbackReturn
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from genpolicy_ros.model_paths import resolve_model_path
from genpolicy_ros.runtime.engine import EngineSettings, ModelInfo, PolicyEngine, TickResult
from genpolicy_ros.runtime.latency import LatencyTracker
from genpolicy_ros.runtime.observation_buffer import AddStatus
from genpolicy_ros.runtime.rate_loop import RateLoop

from . import conversions as conv
from .diagnostics import build_diagnostic_array
from .parameters import SPECS, NodeParams, declaration_list, validate_ros_parameters
from .qos import command_qos, sensor_qos

NODE_NAME = "genpolicy"
TRAJECTORY_TOPIC = "joint_trajectory_controller/joint_trajectory"
FORWARD_TOPIC = "forward_position_controller/commands"
JOINT_STATES_TOPIC = "joint_states"
ACTION_CHUNK_TOPIC = "~/action_chunk"
DIAGNOSTICS_TOPIC = "/diagnostics"
_SAMPLERS_OF_KIND = {"flow": ("flow",), "diffusion": ("ddim", "ddpm"), "regression": ()}
_WARN_THROTTLE_S = 2.0


def camera_topics(camera_names) -> Dict[str, Tuple[str, str]]:
    """camera -> (raw topic, compressed topic); see the module docstring."""
    names = tuple(camera_names)
    if len(names) == 1:
        return {names[0]: ("camera/image_raw", "camera/image_raw/compressed")}
    return {c: (f"camera/{c}/image_raw", f"camera/{c}/image_raw/compressed") for c in names}


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; anything else unchanged."""
    if device != "auto":
        return device
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except Exception:  # noqa: BLE001
        return "cpu"


class PolicyNode(LifecycleNode):
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

        self._state_label = "unconfigured"
        self._params: Optional[NodeParams] = None  # applied values (configure / tick)
        self._staged: Optional[NodeParams] = None  # validated, not yet applied
        self._staged_lock = threading.Lock()
        self._reset_runtime()

    # ================================================================== small helpers
    def _reset_runtime(self) -> None:
        self._config = None  # PolicyConfig of the loaded model
        self._model: Optional[ModelInfo] = None
        self._model_dir = ""
        self._worker = None
        self._engine: Optional[PolicyEngine] = None
        self._loop: Optional[RateLoop] = None
        self._lockstep = False  # enter_lockstep(): the caller drives tick_once()
        self._command_pub = None
        self._chunk_pub = None
        self._diagnostics_pub = None
        self._diagnostics_timer = None
        self._subscriptions_made: list = []
        self._services_made: list = []
        self._out_names: Tuple[str, ...] = ()
        self._out_index = np.zeros(0, dtype=int)  # model joint i -> output position
        self._trajectory_mode = True
        self._active = False
        self._output_started = False
        self._last_published: Optional[np.ndarray] = None  # [D_a] output order
        self._last_result: Optional[TickResult] = None
        self._rejected: Counter = Counter()
        self._last_rejected_reason = ""
        self._nonfinite_blocked = 0
        self._published = 0
        self._publish_errors = 0
        self._last_chunk_meta: dict = {}
        self._camera_transport: Dict[str, Optional[str]] = {}
        self._camera_arrival: Dict[Tuple[str, str], float] = {}
        self._ignored_transport = 0
        self._diag_prev: Dict[str, float] = {}
        self._diag_prev_time = time.monotonic()
        self._last_state_arrival = -math.inf
        self._last_state_stamp: Optional[float] = None

    def _ros_now(self) -> float:
        """Seconds of the node's clock (ROS time; /clock with use_sim_time)."""
        return self.get_clock().now().nanoseconds * 1e-9

    def _current_values(self) -> Dict[str, Any]:
        return {name: self.get_parameter(name).value for name in SPECS}

    @property
    def lifecycle_state(self) -> str:
        """unconfigured / inactive / active / finalized (tracked by the transitions)."""
        return self._state_label

    @property
    def engine(self) -> Optional[PolicyEngine]:
        return self._engine

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
        """One command period in the calling thread (after :meth:`enter_lockstep`)."""
        if not self._lockstep or self._loop is None:
            raise RuntimeError("tick_once: call enter_lockstep() first")
        self._loop.run_ticks(1)

    def executor_stats(self) -> Dict[str, Any]:
        """The command loop's counters (RateLoop.stats: ticks, missed_ticks, lateness) plus
        ``published`` (commands published since configure); ``{}`` when unconfigured."""
        loop = self._loop
        if loop is None:
            return {}
        return dict(loop.stats(), published=self._published)

    # ================================================================== parameters
    def _model_checks(self, values: Dict[str, Any]) -> str:
        """Checks that need the loaded model ('' = fine)."""
        cfg = self._config
        if cfg is None:
            return ""
        fits = _SAMPLERS_OF_KIND.get(cfg.kind, ())
        sampler = values["sampler"]
        if sampler != "auto" and sampler not in fits:
            return (f"sampler {sampler!r} does not fit this {cfg.kind} model "
                    f"(use auto or one of {list(fits)})")
        effective = cfg.default_sampler if sampler == "auto" else sampler
        if cfg.kind == "diffusion" and effective == "ddim" \
                and values["num_steps"] > cfg.diffusion.num_train_steps:
            return (f"num_steps {values['num_steps']} exceeds the model's {cfg.diffusion.num_train_steps} "
                    "diffusion training steps")
        return ""

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

    def _engine_settings(self, p: NodeParams) -> EngineSettings:
        sampler = None if p.sampler == "auto" else p.sampler  # None = the model's default
        return EngineSettings(
            sampler=sampler, num_steps=p.num_steps,
            guidance_scale=p.guidance_scale, ddim_eta=p.ddim_eta, control_rate_hz=p.control_rate_hz,
            action_horizon=p.action_horizon, chunk_blending=p.chunk_blending,
            inference_delay_steps=p.inference_delay_steps, max_joint_velocity=p.max_joint_velocity,
            max_joint_acceleration=p.max_joint_acceleration,
            observation_timeout_s=p.observation_timeout_s, enabled=p.enabled, seed=p.seed)

    def _apply_staged(self) -> None:
        with self._staged_lock:
            params, self._staged = self._staged, None
        if params is None or self._engine is None:
            return
        try:
            self._engine.update_settings(self._engine_settings(params))
        except ValueError as exc:  # validated already; a derived config may still refuse
            self.get_logger().error(f"parameters not applied: {exc}")
            return
        self._params = params

    # ================================================================== lifecycle
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        log = self.get_logger()
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
                self._create_interfaces(params)
        except Exception as exc:  # noqa: BLE001 - any failure leaves the node unconfigured and alive
            log.error(f"configure failed: {type(exc).__name__}: {exc}")
            ok = False
        if not ok:
            self._destroy_runtime()
            return TransitionCallbackReturn.FAILURE
        self._state_label = "inactive"
        log.info(f"configured: model {self._model_dir} ({self._config.kind}, joints {list(self._out_names)}, "
                 f"T_o={self._model.T_o} T_p={self._model.T_p} T_a={self._model.T_a} dt={self._model.dt}), "
                 f"backend {self._worker.info.get('backend', '?')}, output {params.output_mode}")
        return TransitionCallbackReturn.SUCCESS

    def _load_model(self, params: NodeParams) -> bool:
        from genpolicy_ros.core.checkpoint import IncompatibleModelError, ModelLoadError, check_compatible
        from genpolicy_ros.core.checkpoint import load_model_dir

        log = self.get_logger()
        try:
            model_dir = resolve_model_path(params.model_path)
            policy = load_model_dir(model_dir)  # validates config + weights; never unpickles
        except (ModelLoadError, FileNotFoundError, OSError, ValueError) as exc:
            log.error(f"configure failed: cannot load the model: {exc}")
            return False
        cfg = policy.config
        del policy  # the generation child loads its own copy
        if params.joint_names:
            try:
                check_compatible(cfg, joint_names=params.joint_names)
            except IncompatibleModelError as exc:
                log.error(f"configure failed: {exc} (parameter joint_names)")
                return False
        self._config = cfg
        self._model_dir = model_dir
        self._model = ModelInfo.from_policy_config(cfg)
        model_joints = tuple(cfg.action.joint_names)
        self._out_names = tuple(params.joint_names) if params.joint_names else model_joints
        self._out_index = np.array([model_joints.index(j) for j in self._out_names])  # [D_a]
        reason = self._model_checks(self._current_values())
        if reason:
            self._config = None
            log.error(f"configure failed: {reason} (parameters sampler / num_steps)")
            return False
        return True

    def _start_worker(self, params: NodeParams) -> bool:
        from genpolicy_ros.runtime.generation_worker import GenerationWorker, WorkerConfig, WorkerError

        log = self.get_logger()
        settings = self._engine_settings(params)
        latency = LatencyTracker(warmup=0, initial_estimate_s=2 * self._model.dt)
        backend, device = params.backend, resolve_device(params.device)
        if backend != "auto":  # fail fast here rather than after several child restarts
            from genpolicy_ros.runtime.backends import ALIASES, BACKENDS

            available, why = BACKENDS[ALIASES.get(backend, backend)].available(device)
            if not available:
                log.error(f"configure failed: backend {backend} is not available on {device}: {why}")
                return False
        worker_cfg = WorkerConfig(model_dir=str(self._model_dir), backend=backend,
                                  device=device, num_threads=self._generation_threads,
                                  settings=settings.sampler_settings())
        self._worker = GenerationWorker(worker_cfg, latency_tracker=latency, clock=self._ros_now)
        t = time.monotonic()
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
        self._engine = PolicyEngine(self._model, self._worker, settings, clock=self._ros_now,
                                    steady_clock=time.monotonic, latency=latency)
        self._params = params
        self._loop = RateLoop(params.control_rate_hz, self._on_tick, name="genpolicy-executor",
                              on_error=self._on_tick_error)
        return True

    def _create_interfaces(self, params: NodeParams) -> None:
        self._trajectory_mode = params.output_mode == "joint_trajectory"
        if self._trajectory_mode:
            self._command_pub = self.create_publisher(JointTrajectory, TRAJECTORY_TOPIC, command_qos())
        else:
            self._command_pub = self.create_publisher(Float64MultiArray, FORWARD_TOPIC, command_qos())
        self._chunk_pub = self.create_publisher(JointTrajectory, ACTION_CHUNK_TOPIC, command_qos())
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, command_qos())
        subs = [self.create_subscription(JointState, JOINT_STATES_TOPIC, self._on_joint_state, sensor_qos(),
                                         callback_group=self._sensor_group)]
        size = tuple(self._config.observation.image_size)
        for camera, (raw, compressed) in camera_topics(self._model.camera_names).items():
            self._camera_transport[camera] = None
            subs.append(self.create_subscription(
                Image, raw, lambda msg, c=camera: self._on_image(c, "raw", msg, size), sensor_qos(),
                callback_group=self._image_group))
            subs.append(self.create_subscription(
                CompressedImage, compressed, lambda msg, c=camera: self._on_image(c, "compressed", msg, size),
                sensor_qos(), callback_group=self._image_group))
        self._subscriptions_made = subs
        self._services_made = [
            self.create_service(Trigger, "~/pause", self._on_pause, callback_group=self._service_group),
            self.create_service(Trigger, "~/resume", self._on_resume, callback_group=self._service_group),
        ]
        self._diag_prev_time = time.monotonic()
        self._diagnostics_timer = self.create_timer(self._diagnostics_period_s, self._publish_diagnostics,
                                                    callback_group=self._diagnostics_group,
                                                    clock=self._steady_clock)

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        self._apply_staged()
        self._engine.reset()
        self._output_started = False
        self._last_published = None
        self._active = True
        self._lockstep = False
        self._loop.start()
        self._state_label = "active"
        self.get_logger().info(f"active: executing at {self._loop.rate_hz:g} Hz")
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._stop_executing()
        self._state_label = "inactive"
        self.get_logger().info("inactive: holding the last command")
        return TransitionCallbackReturn.SUCCESS

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
        """Stop the executor thread and publish the final hold (once)."""
        if self._loop is not None and self._loop.running:
            if not self._loop.stop(timeout=2.0):
                self.get_logger().error("executor thread did not stop within 2 s")
        was_active, self._active = self._active, False
        if was_active and self._output_started and self._last_published is not None:
            self._publish_command(self._last_published, np.zeros_like(self._last_published), final=True)

    def _destroy_runtime(self) -> None:
        """Undo configure, in reverse order; every step runs even if one fails (e.g. the
        context is already shut down after Ctrl-C) so the generation child is always closed."""
        steps = [self._stop_executing]
        if self._diagnostics_timer is not None:
            steps.append(lambda t=self._diagnostics_timer: self.destroy_timer(t))
        steps += [lambda s=s: self.destroy_subscription(s) for s in self._subscriptions_made]
        steps += [lambda s=s: self.destroy_service(s) for s in self._services_made]
        steps += [lambda p=p: self.destroy_publisher(p)
                  for p in (self._command_pub, self._chunk_pub, self._diagnostics_pub) if p is not None]
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

    def destroy_node(self):
        """Stop the executor and the generation child before the node goes away."""
        try:
            self._destroy_runtime()
        finally:
            super().destroy_node()

    # ================================================================== inputs
    def _reject(self, source: str, reason: str) -> None:
        self._rejected[source] += 1
        self._last_rejected_reason = f"{source}: {reason}"
        self.get_logger().warning(f"rejected {source} message: {reason}",
                                  throttle_duration_sec=_WARN_THROTTLE_S)

    def _on_joint_state(self, msg: JointState) -> None:
        arrival = time.monotonic()
        engine = self._engine
        if engine is None or not self._active:
            return
        positions, reason = conv.joint_state_to_positions(msg, self._model.state_names)  # [D_s]
        if positions is None:
            self._reject("joint_states", reason)
            return
        stamp = conv.stamp_to_seconds(msg.header.stamp)
        status = engine.observe_state(stamp, positions, arrival)
        if not status.accepted:
            self._reject("joint_states", f"stamp {stamp:.6f} s: {status.value}")
            return
        if status == AddStatus.RESET_BACKWARDS:
            self.get_logger().warning(f"joint_states stamp went backwards to {stamp:.6f} s: "
                                      "observation history and plan reset", throttle_duration_sec=_WARN_THROTTLE_S)
        self._last_state_arrival = arrival
        self._last_state_stamp = stamp

    def _on_image(self, camera: str, transport: str, msg, size) -> None:
        arrival = time.monotonic()
        engine = self._engine
        if engine is None or not self._active:
            return
        # One transport per camera: the first that delivers; switch when it goes silent.
        active = self._camera_transport.get(camera)
        self._camera_arrival[(camera, transport)] = arrival
        if active is not None and active != transport:
            silent = arrival - self._camera_arrival.get((camera, active), -math.inf)
            if silent <= engine.settings.observation_timeout_s:
                self._ignored_transport += 1
                return
        self._camera_transport[camera] = transport
        source = f"camera/{camera}/{transport}"
        if transport == "raw":
            image, reason = conv.image_to_array(msg, expected_size=size)  # [H, W, 3] uint8
        else:
            image, reason = conv.compressed_image_to_array(msg, expected_size=size)  # [H, W, 3] uint8
        if image is None:
            self._reject(source, reason)
            return
        stamp = conv.stamp_to_seconds(msg.header.stamp)
        status = engine.observe_image(camera, stamp, image, arrival)
        if not status.accepted:
            self._reject(source, f"stamp {stamp:.6f} s: {status.value}")

    # ================================================================== services
    def _on_pause(self, request, response):
        if self._engine is None or not self._active:
            response.success, response.message = False, f"node is {self._state_label}, not active"
            return response
        self._engine.pause()
        response.success, response.message = True, "paused: holding until ~/resume"
        self.get_logger().info("paused by service call")
        return response

    def _on_resume(self, request, response):
        if self._engine is None or not self._active:
            response.success, response.message = False, f"node is {self._state_label}, not active"
            return response
        if not self._engine.safety.paused:
            response.success, response.message = False, "not paused"
            return response
        self._engine.resume()
        response.success = True
        response.message = "resuming at the next fresh joint state"
        self.get_logger().info("resume requested by service call")
        return response

    # ================================================================== the executor tick
    def _on_tick(self, tick) -> None:
        """RateLoop thread: apply staged settings, tick the engine, publish the command —
        then the slower rest (requesting the next chunk, the ~/action_chunk debug message),
        so that the command leaves at the same instant of every period."""
        if self._staged is not None:
            self._apply_staged()
        engine = self._engine
        if engine is None:
            return
        result = engine.tick(self._ros_now(), defer_request=True)
        try:
            self._last_result = result
            self._publish_result(result)
        finally:
            engine.run_deferred_request()
        if result.merged_chunk is not None:
            self._on_chunk(result.merged_chunk)

    def _publish_result(self, result) -> None:
        command = result.command
        if command is None:
            return
        if not self._output_started:
            if result.status.is_hold:
                return  # nothing before the policy's first action (reliability row 15)
            self._output_started = True
        out = np.asarray(command, dtype=np.float64)[self._out_index]  # [D_a] output order
        if result.velocity is not None and not result.status.is_hold:
            velocity = np.asarray(result.velocity, dtype=np.float64)[self._out_index]  # [D_a]
        else:
            velocity = np.zeros_like(out)  # [D_a] a hold stands still
        self._publish_command(out, velocity)

    def _publish_command(self, positions: np.ndarray, velocity: np.ndarray, final: bool = False) -> None:
        if not (np.isfinite(positions).all() and np.isfinite(velocity).all()):
            self._nonfinite_blocked += 1  # never reached with a working safety filter
            self.get_logger().error("non-finite command blocked before publishing",
                                    throttle_duration_sec=_WARN_THROTTLE_S)
            return
        pub = self._command_pub
        if pub is None:
            return
        try:
            if self._trajectory_mode:
                msg = conv.make_joint_trajectory(self._out_names, positions[None, :], self._loop.rate_hz ** -1,
                                                 velocities=velocity[None, :], stamp_zero=True)
            else:
                msg = conv.make_float64_array(positions)
            pub.publish(msg)
        except Exception as exc:  # noqa: BLE001 - e.g. context shut down mid-publish
            self._publish_errors += 1
            self.get_logger().error(f"publishing the command failed: {exc}", throttle_duration_sec=_WARN_THROTTLE_S)
            return
        self._published += 1
        self._last_published = positions
        if final:
            self.get_logger().info(f"final hold published: {positions.tolist()}")

    def _on_chunk(self, chunk) -> None:
        self._last_chunk_meta = dict(chunk.meta or {})
        pub = self._chunk_pub
        if pub is None or pub.get_subscription_count() == 0:
            return
        try:
            actions = np.asarray(chunk.actions, dtype=np.float64)[:, self._out_index]  # [T_p, D_a]
            msg = conv.make_joint_trajectory(self._out_names, actions, chunk.dt, stamp_zero=False,
                                             stamp=conv.seconds_to_stamp(max(chunk.t0, 0.0)),
                                             start_offset_steps=0.0)
            pub.publish(msg)
        except Exception as exc:  # noqa: BLE001 - debug output must never disturb the loop
            self.get_logger().warning(f"~/action_chunk not published: {exc}", throttle_duration_sec=_WARN_THROTTLE_S)

    def _on_tick_error(self, exc: BaseException, tick) -> None:
        self.get_logger().error(f"executor tick failed: {type(exc).__name__}: {exc}",
                                throttle_duration_sec=_WARN_THROTTLE_S)

    # ================================================================== diagnostics
    def diagnostic_stats(self) -> Dict[str, Any]:
        """The flat numbers behind /diagnostics (rates and counts over the last window)."""
        engine = self._engine
        stats: Dict[str, Any] = {"state": self._state_label}
        if engine is None:
            return stats
        for _ in range(3):  # counters may change under our feet (tick thread): retry
            try:
                es = engine.stats()
                break
            except RuntimeError:
                continue
        else:
            return stats
        now_steady = time.monotonic()
        elapsed = max(1e-6, now_steady - self._diag_prev_time)
        safety_counts = es["safety"]["status"]
        totals = {
            "published": self._published,
            "chunks": es["chunks"],
            "holds": es["holds"] - safety_counts.get("hold_paused", 0),
            "drops": es["scheduler"]["rows_dropped"],
            "non_finite": es["nonfinite_chunks"] + self._nonfinite_blocked,
            "generation_errors": es["worker_errors"],
            "rejected_messages": sum(self._rejected.values()),
        }
        prev = self._diag_prev
        delta = {k: v - prev.get(k, 0) for k, v in totals.items()}
        self._diag_prev, self._diag_prev_time = totals, now_steady
        params = self._params
        loop_stats = self._loop.stats() if self._loop is not None else {}
        result = self._last_result
        hold_reason = ""
        if self._active and result is not None and result.status.is_hold and not es["paused"]:
            hold_reason = "; ".join(result.reasons) or result.status.value
        stats.update({
            "backend": (self._worker.info.get("backend") if self._worker is not None else None),
            "model": self._model_dir,
            "control_rate_hz": params.control_rate_hz if params else None,
            "executor_rate_hz": delta["published"] / elapsed if self._active else None,
            "generation_rate_hz": delta["chunks"] / elapsed,
            "latency_p50_ms": es["latency_p50_ms"], "latency_p95_ms": es["latency_p95_ms"],
            "latency_max_ms": es["latency_max_ms"],
            # A chunk must arrive before the executed part of the previous one runs out.
            "latency_budget_ms": (1e3 * es["scheduler"]["action_horizon"] * self._config.horizon.dt
                                  if self._config is not None else None),
            "holds": delta["holds"] if self._active else 0, "hold_reason": hold_reason,
            "paused": es["paused"], "drops": delta["drops"], "non_finite": delta["non_finite"],
            "generation_errors": delta["generation_errors"], "rejected_messages": delta["rejected_messages"],
            "rejected_total": totals["rejected_messages"], "last_rejected_reason": self._last_rejected_reason,
            "rejected_by_source": dict(self._rejected), "ignored_other_transport": self._ignored_transport,
            "observation_timeout_s": params.observation_timeout_s if params else None,
            "commands_published": self._published, "chunks_total": es["chunks"],
            "last_error": es["last_error"] or "", "stale_reason": es["stale_reason"],
            "chunk_blending": es["scheduler"]["blending"], "action_horizon": es["scheduler"]["action_horizon"],
            "chunk_sampler": self._last_chunk_meta.get("sampler") or (
                self._config.default_sampler if self._last_chunk_meta else None),
            "chunk_num_steps": self._last_chunk_meta.get("num_steps"),
            "executor_lateness_p50_ms": loop_stats.get("lateness_p50_ms"),
            "executor_lateness_p99_ms": loop_stats.get("lateness_p99_ms"),
            "executor_lateness_max_ms": loop_stats.get("lateness_max_ms"),
            "executor_missed_ticks": loop_stats.get("missed_ticks"),
            "observation_resets": es["buffer"]["resets"],
        })
        if self._active and self._last_state_stamp is not None:
            age_stamp = self._ros_now() - self._last_state_stamp
            age_steady = now_steady - self._last_state_arrival
            stats["observation_age_s"] = max(age_stamp, age_steady)
        return stats

    def _publish_diagnostics(self) -> None:
        pub = self._diagnostics_pub
        if pub is None:
            return
        try:
            msg = build_diagnostic_array(self.diagnostic_stats(), stamp=self.get_clock().now().to_msg(),
                                         name=f"{self.get_name()}: policy", hardware_id=self.get_name())
            pub.publish(msg)
        except Exception as exc:  # noqa: BLE001 - diagnostics must never take the node down
            self.get_logger().warning(f"/diagnostics not published: {exc}", throttle_duration_sec=_WARN_THROTTLE_S)


__all__ = ["PolicyNode", "NODE_NAME", "TRAJECTORY_TOPIC", "FORWARD_TOPIC", "JOINT_STATES_TOPIC",
           "ACTION_CHUNK_TOPIC", "camera_topics", "resolve_model_path"]
