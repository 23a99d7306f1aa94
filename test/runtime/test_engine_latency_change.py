"""RTC's measured inference delay (``inference_delay_steps = -1``) follows a latency that
changes at run time, and the seams stay as smooth as before (issue 11 §2).

Deterministic: the real :class:`PolicyEngine` on a fake clock with a scripted worker whose
chunk latency changes mid-run (a heavier sampler set at run time). The worker honours the RTC
prefix the way an inpainting sampler does — ``w·prefix + (1 − w)·own`` with the request's
weights — and each chunk's own trajectory is offset from the previous one's, so a switch
onto a row the prefix did not pin is a visible jump (what naive switching does).

Per merged chunk: the *measured* delay is the first row it contributes (rows already due at
the merge executed from the old plan); the *used* delay is ``stats()["rtc_delay_rows"]``
at its request. RTC is seamless when measured ≤ used (the switch row was frozen).
Seam smoothness is compared as a ratio inside one run (no timing involved).
"""
import math

import numpy as np
import pytest

from genpolicy_ros.runtime.bench.seams import accelerations
from genpolicy_ros.runtime.chunk import ActionChunk
from genpolicy_ros.runtime.engine import EngineSettings, ModelInfo, PolicyEngine

DT = 0.05  # chunk row spacing
RATE = 100.0  # control rate
T_P = 16
FAST_S, SLOW_S = 0.03, 0.18  # 0.6 and 3.6 rows
BIAS = 0.005  # rad: each chunk's own trajectory is this far above/below the true path
MAX_VEL, MAX_ACC = 2.0, 20.0


class FakeClock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


class InpaintingWorker:
    """GenerationWorker stand-in: replies ``latency_s`` after a request (the latency in force
    at submit), records it into the engine's tracker as GenerationWorker does, and inpaints
    the RTC prefix into a sinusoid offset by ±BIAS (alternating per request)."""

    def __init__(self, clock):
        self.clock = clock
        self.latency_s = FAST_S
        self.requests = []
        self.ready, self.busy = True, False
        self.tracker = None
        self._pending = None

    def submit(self, request):
        self.requests.append(request)
        self._pending = (request, self.clock() + self.latency_s, self.latency_s)
        self.busy = True

    def poll(self):
        if self._pending is None or self.clock() < self._pending[1] - 1e-9:
            return None
        request, _, latency = self._pending
        self._pending, self.busy = None, False
        self.tracker.record(latency)
        t = request.t0 + np.arange(T_P) * DT  # [T_p] row due times
        own = path(t)[:, None] + np.where(request.seq % 2, BIAS, -BIAS)  # [T_p, 1]
        actions = np.repeat(own, 2, axis=1)  # [T_p, 2]
        if request.prefix_actions is not None:
            n = request.prefix_actions.shape[0]
            w = np.asarray(request.prefix_weights, dtype=float)[:n, None]  # [n, 1]
            actions[:n] = w * request.prefix_actions + (1.0 - w) * actions[:n]
        return ActionChunk(t0=request.t0, dt=DT, actions=actions, generated_at=self.clock(),
                           latency_s=self.clock() - request.t0, seq=request.seq)


def path(t):
    return 0.3 * np.sin(1.5 * t)  # [..] rad, a smooth reach (0.45 rad/s at most)


def run_with_latency_change(fast_s: float, change_at_s: float, total_s: float, new_latency_s: float):
    """Tick at RATE, the joint state = the last command; the worker's latency becomes
    ``new_latency_s`` at ``change_at_s``. Returns the commands ``[N, 2]``, their times ``[N]``,
    per-chunk records and ``(time, idle_ticks so far)`` per tick."""
    clock = FakeClock()
    model = ModelInfo(joint_names=("a", "b"), state_names=("a", "b"), camera_names=(),
                      lower_limits=np.full(2, -3.0), upper_limits=np.full(2, 3.0), T_o=2, T_p=T_P, T_a=8, dt=DT)
    worker = InpaintingWorker(clock)
    worker.latency_s = fast_s
    engine = PolicyEngine(model, worker, EngineSettings(
        control_rate_hz=RATE, chunk_blending="rtc", inference_delay_steps=-1, observation_timeout_s=0.5,
        max_joint_velocity=MAX_VEL, max_joint_acceleration=MAX_ACC), clock=clock, steady_clock=clock)
    worker.tracker = engine.latency
    arm = np.full(2, path(clock.t))
    start = clock.t
    commands, times, chunks, idle = [], [], [], []
    used = {}  # request seq -> (delay rows used, latency estimate ms)
    for k in range(int(round(total_s * RATE))):
        clock.t = start + (k + 1) / RATE
        if clock.t - start >= change_at_s:
            worker.latency_s = new_latency_s
        engine.observe_state(clock.t, arm)
        n_requests = len(worker.requests)
        res = engine.tick()
        idle.append((clock.t - start, engine.stats()["idle_ticks"]))
        if len(worker.requests) > n_requests:
            stats = engine.stats()
            used[worker.requests[-1].seq] = (stats["rtc_delay_rows"], stats["rtc_delay_latency_ms"])
        if res.merged_chunk is not None:
            chunk = res.merged_chunk
            measured = math.floor((clock.t - chunk.t0) / DT + 1e-9) + 1  # first row due after the merge
            chunks.append({"seq": chunk.seq, "merged_at": clock.t - start, "measured_rows": measured,
                           "switch_time": chunk.t0 + measured * DT - start,
                           "requested_after_change": chunk.t0 - start >= change_at_s})
        if res.command is not None:
            arm = res.command.copy()
            commands.append(arm)
            times.append(clock.t - start)
    for c in chunks:
        c["used_rows"], c["estimate_ms"] = used.get(c["seq"], (None, None))
    return np.array(commands), np.array(times), chunks, idle


def seam_max(acc, times, chunks, lo, hi):
    """Largest |Δ²c|/T² within ±1 tick of the switches of the chunks merged in [lo, hi) s."""
    peaks = []
    for c in chunks[1:]:  # the first chunk starts the stream: not a seam
        if lo <= c["merged_at"] < hi:
            i = int(np.searchsorted(times, c["switch_time"] - 1e-9))
            if 1 <= i < len(acc) - 1:  # the run did not end before the switch
                peaks.append(np.nanmax(acc[max(1, i - 1): i + 2]))
    assert peaks, f"no seam in [{lo}, {hi}) s"
    return max(peaks), len(peaks)


def check_limits(commands):
    v = np.diff(commands, axis=0) * RATE  # [N-1, 2]
    assert np.abs(v).max() <= MAX_VEL + 1e-9
    assert np.abs(np.diff(v, axis=0)).max() <= MAX_ACC / RATE + 1e-9


@pytest.mark.parametrize("history_s", [2.0, 25.0], ids=["short-history", "full-window"])
def test_measured_delay_follows_a_latency_increase_within_one_chunk_without_seam_spikes(history_s):
    change = history_s
    commands, times, chunks, idle = run_with_latency_change(FAST_S, change, change + 4.0, SLOW_S)
    check_limits(commands)
    before = [c for c in chunks[1:] if c["merged_at"] < change]
    after = [c for c in chunks if c["requested_after_change"]]
    assert len(after) >= 10 and len(before) >= 5
    # Before the change the frozen prefix covers every row executed before the switch.
    assert all(c["measured_rows"] <= c["used_rows"] for c in before), before
    # The first chunk requested after the change was planned with the old latency (nothing
    # measured the new one yet): it is late. Every later one freezes enough rows, and not
    # more than one row too many: the delay follows the latency.
    first, rest = after[0], after[1:]
    assert first["measured_rows"] > first["used_rows"], first
    assert all(c["measured_rows"] <= c["used_rows"] <= c["measured_rows"] + 1 for c in rest), rest
    assert all(c["estimate_ms"] == pytest.approx(1e3 * SLOW_S) for c in rest)
    # Seams after the catch-up are as smooth as before the change (same run, ratio).
    acc = accelerations(commands, 1.0 / RATE)  # [N]
    settled = rest[0]["merged_at"]
    peak_before, _ = seam_max(acc, times, chunks, 0.5, change)
    peak_after, n_after = seam_max(acc, times, chunks, settled, np.inf)
    assert n_after >= 10
    assert peak_after <= 1.5 * peak_before + 1e-9, (peak_before, peak_after)
    # The robot waited only for the one chunk that was planned with the old latency.
    assert max(n for t, n in idle if t < change) == 0
    waited = max(n for t, n in idle if t < first["switch_time"] - 1e-9)  # until it takes over
    assert 0 < waited == idle[-1][1], "no idle tick after the late chunk"
    late_seam_max, _ = seam_max(acc, times, [chunks[0], first], -np.inf, np.inf)
    assert late_seam_max > 1.5 * peak_before, "the scripted worker must make an unpinned switch visible"


def test_a_latency_decrease_keeps_the_frozen_prefix_covering_the_switch():
    commands, times, chunks, idle = run_with_latency_change(SLOW_S, 3.0, 6.0, FAST_S)
    check_limits(commands)
    assert all(c["measured_rows"] <= c["used_rows"] for c in chunks[1:]), chunks
    assert idle[-1][1] == 0
    acc = accelerations(commands, 1.0 / RATE)
    peak_before, _ = seam_max(acc, times, chunks, 0.5, 3.0)
    peak_after, _ = seam_max(acc, times, chunks, 3.0, np.inf)
    assert peak_after <= 1.5 * peak_before + 1e-9, (peak_before, peak_after)


def test_the_latency_estimate_takes_a_larger_newest_sample_at_once():
    from genpolicy_ros.runtime.latency import LatencyTracker

    tracker = LatencyTracker(window=100, warmup=0)
    for _ in range(100):
        tracker.record(FAST_S)
    tracker.record(SLOW_S)
    assert tracker.p95 == pytest.approx(FAST_S), "one slow sample of 100 leaves the p95 where it was"
    assert tracker.estimate_s() == pytest.approx(SLOW_S)
    assert tracker.delay_steps(DT) == math.ceil(SLOW_S / DT)
    tracker.record(FAST_S)  # a lone outlier is forgotten by the next request
    assert tracker.estimate_s() == pytest.approx(FAST_S)
