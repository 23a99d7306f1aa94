"""Property test (issue 9 §1): whatever arrives, every command is continuous.

`hypothesis` drives a PolicyEngine with random interleavings of valid, stale, future,
backwards, NaN, huge and ragged joint states, bursts from an earlier time base, a clock
that jumps back, pauses, resumes, lifecycle resets, worker errors, non-finite chunks,
a robot that stops following, and run-time parameter changes; after every tick it checks
the command against the safety filter's contract *relative to the previous command*:
finite, inside the joint limits, speed within the cap and velocity change within a·dt
(docs in runtime/safety_filter.py).
"""
import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genpolicy_ros.runtime.chunk import ActionChunk
from genpolicy_ros.runtime.engine import EngineSettings, ModelInfo, PolicyEngine
from genpolicy_ros.runtime.generation_worker import WorkerError

LOWER = np.array([-3.0, -2.5])
UPPER = np.array([3.0, 2.5])
TOL = 1e-9


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


class RandomWorker:
    """Replies after ~30 ms with a chunk from a seeded generator: smooth, wild, or broken."""

    def __init__(self, clock, rng):
        self.clock, self.rng = clock, rng
        self.ready, self.busy = True, False
        self._pending = None
        self.next_reply = "smooth"  # smooth | wild | nonfinite | error

    def submit(self, request):
        self._pending = (request, self.clock() + 0.03)
        self.busy = True

    def poll(self):
        if self._pending is None or self.clock() < self._pending[1]:
            return None
        request, _ = self._pending
        self._pending, self.busy = None, False
        kind, self.next_reply = self.next_reply, "smooth"
        if kind == "error":
            return WorkerError(seq=request.seq, kind="generation", message="injected")
        start = request.obs["state"][-1, :2]  # [2]
        if kind == "wild":
            actions = self.rng.uniform(-10, 10, size=(16, 2))  # [T_p, 2] far outside the limits
        else:
            actions = start + np.cumsum(self.rng.normal(0, 0.05, size=(16, 2)), axis=0)  # [T_p, 2]
        if kind == "nonfinite":
            actions[3, 1] = np.nan
        return ActionChunk(t0=request.t0, dt=0.05, actions=actions, generated_at=self.clock(),
                           latency_s=0.03, seq=request.seq)


EVENTS = st.one_of(
    st.tuples(st.just("ticks"), st.integers(1, 40)),
    st.tuples(st.just("state"), st.sampled_from(["valid", "stale", "future", "backwards", "burst_old", "nan",
                                                 "huge", "ragged", "bogus_position", "zero_stamp"])),
    st.tuples(st.just("control"), st.sampled_from(["pause", "resume", "reset", "clock_back", "stuck", "follow"])),
    st.tuples(st.just("reply"), st.sampled_from(["wild", "nonfinite", "error"])),
    st.tuples(st.just("settings"), st.fixed_dictionaries({
        "control_rate_hz": st.sampled_from([50.0, 100.0, 200.0]),
        "max_joint_velocity": st.floats(0.1, 4.0),
        "max_joint_acceleration": st.floats(1.0, 50.0),
        "chunk_blending": st.sampled_from(["none", "ensemble", "rtc"]),
        "action_horizon": st.sampled_from([None, 2, 8, 16]),
        "enabled": st.booleans(),
    })),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=st.lists(EVENTS, min_size=5, max_size=60), seed=st.integers(0, 2**16))
def test_every_command_is_continuous_whatever_arrives(events, seed):
    rng = np.random.default_rng(seed)
    clock = Clock()
    model = ModelInfo(joint_names=("a", "b"), state_names=("a", "b", "target_x"), camera_names=(),
                      lower_limits=LOWER, upper_limits=UPPER, T_o=2, T_p=16, T_a=8, dt=0.05)
    worker = RandomWorker(clock, rng)
    engine = PolicyEngine(model, worker, EngineSettings(chunk_blending="rtc", observation_timeout_s=0.3),
                          clock=clock, steady_clock=clock)
    robot = np.array([0.5, -0.5])  # where the robot is
    following = True
    prev_command = prev_velocity = None
    issued = 0

    def observe(stamp, values):
        engine.observe_state(stamp, values)

    def tick():
        nonlocal prev_command, prev_velocity, robot, issued
        period = engine.settings.period_s
        clock.t += period
        observe(clock.t, np.r_[robot, 0.1])
        result = engine.tick()
        cfg = engine.safety.config
        if result.command is None:
            assert prev_command is None, "a command stream, once started, never stops"
            return
        c = result.command
        assert np.isfinite(c).all()
        assert (c >= LOWER - TOL).all() and (c <= UPPER + TOL).all(), f"{c} outside the joint limits"
        if prev_command is not None:
            v = (c - prev_command) / cfg.dt  # [2]
            assert (np.abs(v - prev_velocity) <= cfg.max_acceleration * cfg.dt + 1e-6).all(), \
                f"acceleration limit broken: v {prev_velocity} -> {v} ({result.status.value})"
            cap = np.maximum(cfg.max_velocity, np.abs(prev_velocity) - cfg.max_acceleration * cfg.dt)
            assert (np.abs(v) <= cap + 1e-6).all(), f"velocity cap broken: |v| {np.abs(v)} > {cap}"
            prev_velocity = v
        else:
            prev_velocity = np.asarray(result.velocity)
            assert (np.abs(c - robot) <= cfg.max_velocity * cfg.dt + 1e-6).all(), "first command jumped"
        prev_command = c
        issued += 1
        if following:
            robot = c.copy()

    for _ in range(30):  # a healthy start
        tick()
    for kind, arg in events:
        if kind == "ticks":
            for _ in range(arg):
                tick()
        elif kind == "state":
            t = clock.t
            values = {"valid": np.r_[robot, 0.1], "stale": np.r_[robot + 2.0, 0.1],
                      "future": np.r_[robot - 2.0, 0.1], "backwards": np.r_[-robot, 0.1],
                      "burst_old": np.r_[-robot, 0.1], "nan": np.r_[np.nan, 0.0, 0.1],
                      "huge": np.r_[1e9, -1e9, 0.1], "ragged": np.r_[robot],
                      "bogus_position": np.r_[np.clip(-robot * 3, LOWER, UPPER), 0.1],
                      "zero_stamp": np.r_[robot, 0.1]}[arg]
            stamp = {"stale": t - 3600.0, "future": t + 10.0, "backwards": t - 0.2, "zero_stamp": 0.0,
                     "bogus_position": t + 1e-4}.get(arg, t)
            if arg == "burst_old":
                for k in range(8):
                    observe(t - 3600.0 + 0.01 * k, values)
            else:
                observe(stamp, values)
        elif kind == "control":
            if arg == "pause":
                engine.pause()
            elif arg == "resume":
                engine.resume()
            elif arg == "reset":
                engine.reset()
            elif arg == "clock_back":
                clock.t -= 5.0
            elif arg == "stuck":
                following = False
            else:
                following = True
        elif kind == "reply":
            worker.next_reply = arg
        else:
            engine.update_settings(EngineSettings(observation_timeout_s=0.3, **arg))
        tick()
    assert issued > 0
    assert math.isfinite(float(engine.stats()["ticks"]))
