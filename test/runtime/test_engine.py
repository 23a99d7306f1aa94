"""PolicyEngine: the tick that joins buffer, worker, scheduler and safety filter.

A scripted stand-in worker (same submit/poll interface as GenerationWorker) produces
chunks after a chosen latency on a fake clock, so every decision is deterministic.
"""

import numpy as np
import pytest

from genpolicy_ros.runtime.chunk import ActionChunk
from genpolicy_ros.runtime.engine import EngineSettings, ModelInfo, PolicyEngine
from genpolicy_ros.runtime.generation_worker import WorkerError
from genpolicy_ros.runtime.safety_filter import SafetyStatus

DT = 0.05  # model row spacing
RATE = 100.0


class FakeClock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


class ScriptedWorker:
    """Returns a chunk `latency_s` after each request: a ramp starting at the observed arm."""

    def __init__(self, clock, latency_s=0.03, dt=DT, T_p=16, slope=0.2):
        self.clock, self.latency_s, self.dt, self.T_p, self.slope = clock, latency_s, dt, T_p, slope
        self.requests = []
        self._pending = None
        self.ready, self.busy = True, False
        self.override = None  # callable(request) -> ActionChunk | WorkerError
        self.latency_tracker = None

    def submit(self, request):
        self.requests.append(request)
        self._pending = (request, self.clock() + self.latency_s)
        self.busy = True

    def poll(self):
        if self._pending is None or self.clock() < self._pending[1] - 1e-12:
            return None
        request, _ = self._pending
        self._pending, self.busy = None, False
        if self.latency_tracker is not None:  # as GenerationWorker does
            self.latency_tracker.record(self.latency_s)
        if self.override is not None:
            return self.override(request)
        start = request.obs["state"][-1, :2]  # [2] newest arm position
        rows = np.arange(self.T_p)[:, None] * self.dt * self.slope  # [T_p, 1]
        actions = start[None, :] + rows  # [T_p, 2] moving at `slope` rad/s
        return ActionChunk(t0=request.t0, dt=self.dt, actions=actions, generated_at=self.clock(),
                           latency_s=self.clock() - request.t0, seq=request.seq)


def make_engine(**settings):
    clock = FakeClock()
    model = ModelInfo(joint_names=("shoulder", "elbow"), state_names=("shoulder", "elbow", "target_x", "target_y"),
                      camera_names=(), lower_limits=np.array([-3.0, -2.5]), upper_limits=np.array([3.0, 2.5]),
                      T_o=2, T_p=16, T_a=8, dt=DT)
    worker = ScriptedWorker(clock)
    base = dict(control_rate_hz=RATE, chunk_blending="none", observation_timeout_s=0.2)
    base.update(settings)
    engine = PolicyEngine(model, worker, EngineSettings(**base), clock=clock, steady_clock=clock)
    worker.latency_tracker = engine.latency
    return engine, worker, clock


def run(engine, clock, seconds, state=None, observe_every=1, stamp_offset=0.0):
    """Tick at RATE for `seconds`, feeding a joint state (the last command) every tick."""
    results = []
    arm = np.zeros(2) if state is None else np.asarray(state, float)
    for k in range(int(round(seconds * RATE))):
        clock.t += 1.0 / RATE
        if k % observe_every == 0:
            engine.observe_state(clock.t + stamp_offset, np.r_[arm, 0.1, 0.05])
        res = engine.tick()
        if res.command is not None:
            arm = res.command.copy()
        results.append(res)
    return results


def test_nothing_is_published_before_the_first_observation():
    engine, worker, clock = make_engine()
    for _ in range(20):
        clock.t += 0.01
        res = engine.tick()
        assert res.command is None
    assert worker.requests == [], "no chunk may be requested without observations"
    assert engine.stats()["stale_reason"] == "no observation yet"


def test_streaming_observations_produce_commands_that_follow_the_chunks():
    engine, worker, clock = make_engine()
    results = run(engine, clock, 2.0)
    commands = np.array([r.command for r in results if r.command is not None])
    assert len(worker.requests) >= 2 / (8 * DT) * 0.8, f"only {len(worker.requests)} requests in 2 s"
    assert np.isfinite(commands).all()
    # The ramp moves at 0.2 rad/s; with T_a = 8 re-planning, the arm advances steadily.
    assert commands[-1, 0] == pytest.approx(0.2 * 2.0, abs=0.12), commands[-1]
    steps = np.abs(np.diff(commands, axis=0)).max()
    assert steps <= 2.0 / RATE + 1e-9, f"a step of {steps} exceeds the velocity limit"
    stats = engine.stats()
    assert stats["chunks"] >= len(worker.requests) - 1 and stats["worker_errors"] == 0


def test_requests_start_early_enough_that_execution_never_starves():
    engine, worker, clock = make_engine()
    worker.latency_s = 0.12  # 2.4 rows of latency
    results = run(engine, clock, 3.0)
    first = next(i for i, r in enumerate(results) if r.status == SafetyStatus.OK)
    starved = [r for r in results[first:] if r.status == SafetyStatus.HOLD_STARVED]
    assert not starved, f"starved on {len(starved)} ticks after the first action"


def test_nonfinite_chunk_is_never_executed_and_is_counted():
    engine, worker, clock = make_engine()
    run(engine, clock, 0.5)
    worker.override = lambda req: ActionChunk(t0=req.t0, dt=DT, actions=np.full((16, 2), np.nan), seq=req.seq)
    results = run(engine, clock, 1.0)
    assert engine.counters.nonfinite_chunks >= 1
    assert all(r.command is None or np.isfinite(r.command).all() for r in results)
    assert results[-1].status.is_hold, results[-1].status


def test_worker_error_holds_and_the_engine_recovers_with_the_next_chunk():
    engine, worker, clock = make_engine()
    run(engine, clock, 0.3)
    worker.override = lambda req: WorkerError("generation", "boom", seq=req.seq)
    held = run(engine, clock, 0.6)
    assert engine.counters.worker_errors >= 1
    assert held[-1].status.is_hold
    worker.override = None
    recovered = run(engine, clock, 0.6)
    assert recovered[-1].status == SafetyStatus.OK


def test_stale_observations_stop_requests_and_hold():
    engine, worker, clock = make_engine()
    run(engine, clock, 0.5)
    n_requests = len(worker.requests)
    results = []
    for _ in range(60):  # 0.6 s without any joint state (timeout 0.2 s)
        clock.t += 0.01
        results.append(engine.tick())
    assert results[-1].status == SafetyStatus.HOLD_STALE
    assert "joint state" in engine.stats()["stale_reason"]
    assert len(worker.requests) <= n_requests + 1, "chunks were requested on stale observations"


def test_backwards_time_resets_and_discards_chunks_from_the_old_timeline():
    engine, worker, clock = make_engine()
    run(engine, clock, 0.5)
    worker.latency_s = 0.05
    for _ in range(100):  # tick until a request is in flight
        if worker.busy:
            break
        run(engine, clock, 0.01)
    assert worker.busy
    # One message from an earlier time base is dropped as stale: no reset.
    epoch = engine.buffer.epoch
    status = engine.observe_state(clock.t - 5.0, np.r_[0.0, 0.0, 0.1, 0.05])
    assert status.value == "stamp_backwards" and engine.buffer.epoch == epoch
    # A sender whose time base really went back (bag loop) is confirmed by several
    # consecutive messages: then history and plan reset, the reply of the old timeline is dropped.
    for k in range(engine.buffer.reset_confirm_samples - 1):
        engine.observe_state(clock.t - 5.0 + 0.01 * (k + 1), np.r_[0.0, 0.0, 0.1, 0.05])
    assert engine.buffer.epoch == epoch + 1
    run(engine, clock, 0.2, stamp_offset=-5.0 + 0.1)
    assert engine.counters.chunks_discarded_epoch >= 1


def test_a_clock_that_goes_back_resets_at_once():
    """Simulated time restarting (/clock going back) confirms the reset by itself."""
    engine, worker, clock = make_engine()
    run(engine, clock, 0.5)
    epoch = engine.buffer.epoch
    clock.t -= 5.0
    status = engine.observe_state(clock.t, np.r_[0.0, 0.0, 0.1, 0.05])
    assert status.value == "reset_backwards" and engine.buffer.epoch == epoch + 1


def test_settings_are_validated_and_applied_whole_at_the_next_tick():
    with pytest.raises(ValueError, match="num_steps"):
        EngineSettings(num_steps=0)
    with pytest.raises(ValueError, match="chunk_blending"):
        EngineSettings(chunk_blending="blend")
    with pytest.raises(ValueError, match="guidance_scale"):
        EngineSettings(guidance_scale=float("nan"))
    engine, worker, clock = make_engine()
    run(engine, clock, 0.3)
    engine.update_settings(EngineSettings(control_rate_hz=RATE, chunk_blending="none", num_steps=3,
                                          sampler="flow", observation_timeout_s=0.2, max_joint_velocity=0.5))
    before = len(worker.requests)
    run(engine, clock, 0.6)
    new_requests = worker.requests[before:]
    assert new_requests and all(r.settings.num_steps == 3 and r.settings.sampler == "flow" for r in new_requests)
    assert engine.safety.config.max_velocity.max() == pytest.approx(0.5)


def test_rtc_requests_carry_the_frozen_prefix_of_the_executing_plan():
    engine, worker, clock = make_engine(chunk_blending="rtc", inference_delay_steps=2)
    run(engine, clock, 1.0)
    with_prefix = [r for r in worker.requests if r.prefix_actions is not None]
    assert with_prefix, "no RTC request carried a prefix"
    req = with_prefix[-1]
    assert req.prefix_weights.shape == (16,)
    assert np.all(req.prefix_weights[:2] == 1.0) and req.prefix_weights[-1] == 0.0
    assert req.prefix_actions.shape[1] == 2 and np.isfinite(req.prefix_actions).all()


def test_pause_latches_a_hold_until_resume_and_fresh_observations():
    engine, worker, clock = make_engine()
    run(engine, clock, 0.5)
    engine.pause()
    paused = run(engine, clock, 0.3)
    assert all(r.status == SafetyStatus.HOLD_PAUSED for r in paused)
    # A hold is a braking stop: once the velocity has reached zero, one command stands.
    held = {tuple(np.round(r.command, 12)) for r in paused[10:] if r.command is not None}
    assert len(held) == 1, "a paused engine must hold one command"
    engine.resume()
    resumed = run(engine, clock, 0.5)
    assert resumed[-1].status == SafetyStatus.OK


def test_disabled_engine_holds_and_requests_nothing():
    engine, worker, clock = make_engine(enabled=False)
    results = run(engine, clock, 0.5)
    assert worker.requests == []
    assert all(r.status.is_hold for r in results)


def test_deferred_request_waits_for_its_second_half_and_changes_no_command():
    """tick(defer_request=True) + run_deferred_request() (what the node does to send the
    command before the slow request work) gives the same commands and requests as tick()."""
    plain, plain_worker, plain_clock = make_engine(chunk_blending="rtc")
    deferred, worker, clock = make_engine(chunk_blending="rtc")
    arm = np.zeros(2)
    deferred_results = []
    for k in range(200):
        clock.t += 1.0 / RATE
        deferred.observe_state(clock.t, np.r_[arm, 0.1, 0.05])
        n_before = len(worker.requests)
        res = deferred.tick(defer_request=True)
        assert len(worker.requests) == n_before, "a deferred tick must not submit a request by itself"
        deferred.run_deferred_request()
        deferred.run_deferred_request()  # a second call is a no-op
        if res.command is not None:
            arm = res.command.copy()
        deferred_results.append(res)
    plain_results = run(plain, plain_clock, 2.0)
    assert len(worker.requests) == len(plain_worker.requests) > 3
    for a, b in zip(worker.requests, plain_worker.requests):
        assert a.t0 == b.t0 and a.seq == b.seq
        np.testing.assert_array_equal(a.prefix_actions if a.prefix_actions is not None else [],
                                      b.prefix_actions if b.prefix_actions is not None else [])
    for a, b in zip(deferred_results, plain_results):
        assert a.status == b.status
        if a.command is None:
            assert b.command is None
        else:
            np.testing.assert_array_equal(a.command, b.command)


def test_non_joint_inputs_fill_their_state_entries_with_the_same_stamp_rules():
    """Issue 10: a model may observe low-dim inputs that are not joints (here the target);
    they arrive on their own stream and land in their state entries, in model order."""
    clock = FakeClock()
    model = ModelInfo(joint_names=("shoulder", "elbow"), state_names=("shoulder", "target_x", "elbow", "target_y"),
                      camera_names=(), lower_limits=np.array([-3.0, -2.5]), upper_limits=np.array([3.0, 2.5]),
                      T_o=2, T_p=16, T_a=8, dt=DT, state_inputs={"target": ("target_x", "target_y")})
    assert model.joint_state_names == ("shoulder", "elbow")
    worker = ScriptedWorker(clock)
    worker.override = lambda request: WorkerError(seq=request.seq, kind="generation", message="inspect only")
    engine = PolicyEngine(model, worker, EngineSettings(control_rate_hz=RATE, chunk_blending="none",
                                                        observation_timeout_s=0.2), clock=clock, steady_clock=clock)
    for _ in range(20):
        clock.t += 0.01
        engine.observe_state(clock.t, np.array([0.3, -0.2]))
        engine.tick()
    assert worker.requests == [], "no request while the target input never arrived"
    assert engine.stats()["snapshot_unavailable"].get("missing_stream", 0) > 0
    for _ in range(20):
        clock.t += 0.01
        engine.observe_state(clock.t, np.array([0.3, -0.2]))
        engine.observe_input("target", clock.t, np.array([0.1, 0.05]))
        engine.tick()
    assert worker.requests, "inputs complete: requests start"
    state = worker.requests[-1].obs["state"]  # [T_o, 4]
    np.testing.assert_allclose(state[-1], [0.3, 0.1, -0.2, 0.05])
    with pytest.raises(ValueError, match="state_inputs"):
        ModelInfo(joint_names=("a",), state_names=("a",), camera_names=(), lower_limits=np.zeros(1),
                  upper_limits=np.ones(1), T_o=1, T_p=2, T_a=1, dt=0.1, state_inputs={"x": ("nope",)})
