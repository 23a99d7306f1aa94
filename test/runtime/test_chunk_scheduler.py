"""ChunkScheduler: due-time dropping, no bursts, blending modes, RTC prefix, config boundaries."""
import math
import subprocess
import sys
import threading

import numpy as np
import pytest

from genpolicy_ros.runtime.chunk import ActionChunk
from genpolicy_ros.runtime.chunk_scheduler import ChunkScheduler, SchedulerConfig, rtc_soft_weights

DT = 0.1


def chunk(t0, values, seq=0, dt=DT):
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    return ActionChunk(t0=t0, dt=dt, actions=arr, generated_at=t0, latency_s=0.0, seq=seq)


def ramp(n, start=0.0, step=1.0):
    return start + step * np.arange(n, dtype=np.float64)


# ----------------------------------------------------------------------------- chunk
def test_action_chunk_validates_and_due_times():
    c = chunk(1.0, ramp(4))
    np.testing.assert_allclose(c.due_times(), [1.0, 1.1, 1.2, 1.3])
    assert c.horizon == 4 and c.action_dim == 1
    with pytest.raises(ValueError, match="dt"):
        ActionChunk(t0=0.0, dt=0.0, actions=np.zeros((2, 1)))
    with pytest.raises(ValueError, match="t0"):
        ActionChunk(t0=float("nan"), dt=0.1, actions=np.zeros((2, 1)))
    with pytest.raises(ValueError, match="2-D"):
        ActionChunk(t0=0.0, dt=0.1, actions=np.zeros(3))
    with pytest.raises(ValueError):
        c.actions[0, 0] = 5.0  # read-only


def test_scheduler_config_validation():
    with pytest.raises(ValueError, match="blending"):
        SchedulerConfig(blending="average")
    with pytest.raises(ValueError, match="action_horizon"):
        SchedulerConfig(action_horizon=0)
    with pytest.raises(ValueError, match="refill_fraction"):
        SchedulerConfig(refill_fraction=1.5)
    with pytest.raises(ValueError, match="ensemble_decay"):
        SchedulerConfig(ensemble_decay=float("inf"))


# ----------------------------------------------------------------------------- due times
def test_rows_already_due_are_dropped_and_counted():
    s = ChunkScheduler(SchedulerConfig(action_horizon=8))
    res = s.merge(chunk(1.0, ramp(16)), now=1.35)  # rows due 1.0, 1.1, 1.2, 1.3 are past
    assert res.accepted and res.first_row == 4 and res.dropped_rows == 4
    assert res.switch_time == pytest.approx(1.4)
    assert s.stats()["rows_dropped"] == 4
    assert s.pop(1.35) is None, "nothing may be executed before the first not-yet-due row"
    assert s.pop(1.4)[0] == 4.0
    assert s.pop(1.45)[0] == 4.0  # held between rows
    assert s.pop(1.5)[0] == 5.0


def test_row_due_exactly_now_counts_as_due_despite_float_noise():
    s = ChunkScheduler(SchedulerConfig(action_horizon=8))
    res = s.merge(chunk(0.1, ramp(8), dt=0.05), now=0.2)  # 0.1 + 2*0.05 is 0.2000000000000000111
    assert res.first_row == 3, f"row 2 is due at now and must be dropped, got first_row={res.first_row}"


def test_chunk_with_no_executable_row_left_is_rejected_as_late():
    s = ChunkScheduler(SchedulerConfig(action_horizon=8))
    res = s.merge(chunk(0.0, ramp(16)), now=0.75)  # rows 0..7 (the executable ones) are all due
    assert not res.accepted and res.reason == "late"
    assert s.stats()["rejected"]["late"] == 1 and s.stats()["rows_dropped"] == 8
    assert s.pop(0.8) is None


def test_starvation_returns_none_and_no_burst_after_a_stall():
    s = ChunkScheduler(SchedulerConfig(action_horizon=16))
    s.merge(chunk(0.0, ramp(16)), now=0.05)
    assert s.pop(0.1)[0] == 1.0
    # executor stalls from 0.1 to 0.75: the next pop must be the row due now (7), not row 2
    got = s.pop(0.75)[0]
    assert got == 7.0, f"after a stall pop must return the row due now, got row {got}"
    assert s.stats()["rows_skipped"] == 5
    assert s.pop(0.8)[0] == 8.0
    assert s.pop(1.55)[0] == 15.0
    assert s.pop(1.6) is None, "past the last executable row the scheduler is starved"
    assert s.stats()["starved"] == 1


def test_action_horizon_caps_execution():
    s = ChunkScheduler(SchedulerConfig(action_horizon=3))
    s.merge(chunk(0.0, ramp(16)), now=0.01)
    assert s.pop(0.25)[0] == 2.0
    assert s.pop(0.3) is None, "row 3 is beyond T_a=3 and must not be executed"


def test_invalid_chunks_are_rejected_without_touching_the_plan():
    s = ChunkScheduler(SchedulerConfig(action_horizon=8))
    s.merge(chunk(1.0, ramp(8)), now=1.01)
    bad = ramp(8)
    bad[5] = np.nan
    assert s.merge(chunk(1.1, bad), now=1.11).reason == "nonfinite"
    assert s.merge(chunk(1.1, np.zeros((8, 2))), now=1.11).reason == "dim_mismatch"
    assert s.merge(chunk(0.9, ramp(8)), now=1.11).reason == "outdated"
    assert s.pop(1.5)[0] == 5.0
    assert s.stats()["rejected"] == {"nonfinite": 1, "dim_mismatch": 1, "outdated": 1, "late": 0}
    with pytest.raises(ValueError, match="now"):
        s.pop(float("nan"))


# ----------------------------------------------------------------------------- blending
def executed(s, t_start, t_end, step=0.01):
    times = np.arange(t_start, t_end, step)
    out = [s.pop(float(t)) for t in times]
    return times, out


def test_none_mode_switches_at_first_not_yet_due_row_with_visible_seam():
    s = ChunkScheduler(SchedulerConfig(blending="none", action_horizon=8))
    s.merge(chunk(0.0, np.zeros(8)), now=0.05)
    res = s.merge(chunk(0.3, np.ones(8)), now=0.32)  # B row 0 (0.3) is already due
    assert res.switch_time == pytest.approx(0.4)
    times, out = executed(s, 0.1, 0.7)
    vals = np.array([o[0] for o in out])
    assert (vals[times < 0.4 - 1e-9] == 0.0).all() and (vals[times >= 0.4 - 1e-9] == 1.0).all()
    jump = np.abs(np.diff(vals)).max()
    assert jump == 1.0, f"none-mode seam jump should be visible, got {jump}"


def test_ensemble_is_the_documented_act_weighted_average():
    k = 0.5
    s = ChunkScheduler(SchedulerConfig(blending="ensemble", action_horizon=8, ensemble_decay=k))
    A, B, C = ramp(8), 100.0 + ramp(8), 200.0 + ramp(8)
    s.merge(chunk(0.0, A), now=0.05)
    s.merge(chunk(0.2, B), now=0.25)  # B row j ↔ A row j+2
    w0, w1, w2 = 1.0, math.exp(-k), math.exp(-2 * k)
    # τ = 0.3 .. 0.7: A and B both predicted it; A (oldest) has weight w0, B weight w1
    for j in range(1, 6):
        tau = 0.2 + j * DT
        want = (A[j + 2] * w0 + B[j] * w1) / (w0 + w1)
        assert s.pop(tau)[0] == pytest.approx(want), f"row at {tau:.1f}"
    # τ = 0.8: beyond A's horizon, only B predicted it
    assert s.pop(0.8)[0] == pytest.approx(B[6])
    s.merge(chunk(0.4, C), now=0.85)  # C row j ↔ B row j+2 ↔ A row j+4; first C row due > 0.85 is j=5
    assert s.pop(0.9)[0] == pytest.approx((B[7] * w0 + C[5] * w1) / (w0 + w1))
    # three chunks on the same instant: fresh scheduler, all merged before τ=0.5 is due
    s2 = ChunkScheduler(SchedulerConfig(blending="ensemble", action_horizon=8, ensemble_decay=k))
    s2.merge(chunk(0.0, A), now=0.01)
    s2.merge(chunk(0.2, B), now=0.21)
    s2.merge(chunk(0.4, C), now=0.41)
    want = (A[5] * w0 + B[3] * w1 + C[1] * w2) / (w0 + w1 + w2)
    got = s2.pop(0.5)[0]
    assert got == pytest.approx(want), f"3-way ACT average: want {want}, got {got}"


def test_ensemble_negative_decay_favours_newer_chunks():
    s = ChunkScheduler(SchedulerConfig(blending="ensemble", action_horizon=8, ensemble_decay=-1.0))
    s.merge(chunk(0.0, np.zeros(8)), now=0.01)
    s.merge(chunk(0.0, np.ones(8)), now=0.02)
    got = s.pop(0.3)[0]
    assert got == pytest.approx(math.e / (1 + math.e)) and got > 0.5


def test_rtc_frozen_prefix_is_exactly_the_rows_due_in_the_delay_window():
    s = ChunkScheduler(SchedulerConfig(blending="rtc", action_horizon=12))
    A = np.stack([ramp(16, step=0.1), -ramp(16)], axis=1)  # [16, 2]
    s.merge(chunk(0.0, A), now=0.05)
    prefix, start = s.frozen_prefix(now=0.3, delay_steps=3, T_p=16)
    assert start == 0.3
    np.testing.assert_array_equal(prefix, A[3:6])  # due 0.3, 0.4, 0.5 ∈ [0.3, 0.6)
    p = s.rtc_prefix(now=0.3, delay_steps=3, T_p=16)
    assert p.actions.shape == (13, 2), "overlap = A's rows predicted from 0.3 on (rows 3..15)"
    np.testing.assert_array_equal(p.actions, A[3:16])
    w = p.weights
    assert w.shape == (16,) and (w[:3] == 1.0).all() and (w[13:] == 0.0).all()
    assert (np.diff(w[3:14]) < 0).all() and 0 < w[12] < w[3] < 1, f"soft decay expected, got {w}"
    np.testing.assert_array_equal(s.prefix_weights(0.3, 3, 16), w)
    assert ChunkScheduler().frozen_prefix(0.3, 3, 16) is None


def test_rtc_soft_weights_formula():
    w = rtc_soft_weights(10, 2, 6)
    c = (6 - np.arange(2, 6)) / (6 - 2 + 1)
    np.testing.assert_allclose(w, np.r_[1, 1, c * np.expm1(c) / (math.e - 1), 0, 0, 0, 0])


def test_rtc_continuous_when_new_chunk_starts_with_the_frozen_prefix():
    slope_step = 0.1  # one row's increment of the executing chunk
    s = ChunkScheduler(SchedulerConfig(blending="rtc", action_horizon=10))
    A = ramp(16, step=slope_step)
    s.merge(chunk(0.0, A), now=0.05)
    obs_stamp, d = 0.4, 2
    prefix, start = s.frozen_prefix(obs_stamp, d, 16)
    # a generator that honours the prefix, then turns around (slope −0.05/row)
    B = np.r_[prefix[:, 0], prefix[-1, 0] - 0.05 * np.arange(1, 15)]
    res = s.merge(chunk(start, B), now=obs_stamp + 0.15)  # latency 0.15 s
    assert res.first_row == 2
    _, out = executed(s, 0.1, 1.3)
    vals = np.array([o[0] for o in out])
    seam = np.abs(np.diff(vals)).max()
    assert seam <= slope_step + 1e-9, f"rtc seam should be no bigger than a regular row step, got {seam:.3f}"
    # the same arrival with a chunk that ignores the prefix jumps at the seam
    s2 = ChunkScheduler(SchedulerConfig(blending="none", action_horizon=10))
    s2.merge(chunk(0.0, A), now=0.05)
    s2.merge(chunk(obs_stamp, B + 0.5), now=obs_stamp + 0.15)
    _, out2 = executed(s2, 0.1, 1.3)
    jump = np.abs(np.diff([o[0] for o in out2])).max()
    assert jump > 3 * slope_step, f"without prefix agreement a seam jump is expected, got {jump:.3f}"


def test_rtc_prefix_with_first_order_hold_freezes_the_row_the_last_interval_moves_to():
    """With interpolation the robot spends the delay window moving *towards* row d, so
    row d is fixed by what executes too: d + 1 frozen rows (d with zero-order hold)."""
    A = ramp(16, step=0.1)
    foh = ChunkScheduler(SchedulerConfig(blending="rtc", action_horizon=12, interpolate=True))
    zoh = ChunkScheduler(SchedulerConfig(blending="rtc", action_horizon=12, interpolate=False))
    for s in (foh, zoh):
        s.merge(chunk(0.0, A), now=0.05)
    p_foh, p_zoh = foh.rtc_prefix(0.3, 2, 16), zoh.rtc_prefix(0.3, 2, 16)
    assert p_zoh.frozen_steps == 2 and p_foh.frozen_steps == 3
    assert (p_foh.weights[:3] == 1).all() and p_foh.weights[3] < 1
    assert foh.rtc_prefix(0.3, 0, 16).frozen_steps == 0, "no delay, nothing executes from the old plan"


def test_rtc_prefix_rows_are_the_values_pop_will_command():
    """An observation stamp between two rows: the prefix is the plan as it executes (the
    interpolated values with first-order hold), not the rows held by a lookup."""
    A = np.stack([ramp(16, step=0.1), -ramp(16)], axis=1)  # [16, 2]
    s = ChunkScheduler(SchedulerConfig(blending="rtc", action_horizon=12, interpolate=True))
    s.merge(chunk(0.0, A), now=0.05)
    p = s.rtc_prefix(now=0.33, delay_steps=3, T_p=16)
    for i in range(p.frozen_steps + 2):
        np.testing.assert_allclose(p.actions[i], s.pop(0.33 + i * DT), atol=1e-12)


def test_rtc_prefix_exists_before_the_first_chunk_starts_executing():
    """Right after the first merge the plan starts at its switch row; a request stamped
    before that still gets the chunk's rows (else the first seam is unconstrained)."""
    s = ChunkScheduler(SchedulerConfig(blending="rtc", action_horizon=8))
    s.merge(chunk(0.0, ramp(16, step=0.1)), now=0.25)  # plan starts at row 3 (0.3)
    p = s.rtc_prefix(now=0.25, delay_steps=2, T_p=16)
    assert p is not None and p.frozen_steps == 2
    np.testing.assert_allclose(p.actions[:3, 0], [0.2, 0.3, 0.4])


def test_rtc_seam_is_continuous_with_first_order_hold():
    """A generator that honours exactly the frozen rows it is given and then turns away:
    with interpolation the executed positions have no jump at the seam (the largest
    tick-to-tick step stays a regular row step / ticks per row)."""
    slope, ticks_per_row = 0.1, 10
    s = ChunkScheduler(SchedulerConfig(blending="rtc", action_horizon=10, interpolate=True))
    s.merge(chunk(0.0, ramp(16, step=slope)), now=0.05)
    stamp, d = 0.4, 2
    p = s.rtc_prefix(stamp, d, 16)
    B = np.r_[p.actions[:p.frozen_steps, 0],
              p.actions[p.frozen_steps - 1, 0] - 0.05 * np.arange(1, 16 - p.frozen_steps + 1)]
    res = s.merge(chunk(stamp, B), now=stamp + d * DT - 0.01)  # arrives one tick before row d
    assert res.first_row == d
    _, out = executed(s, 0.1, 1.3)
    steps = np.abs(np.diff([o[0] for o in out]))
    assert steps.max() <= slope / ticks_per_row + 1e-9, f"position jump at the seam: {steps.max():.4f}"


def test_rtc_prefix_holds_where_the_plan_runs_out_before_the_switch():
    """Latency longer than the executable rows left (slow model): the robot holds its last
    command until the new chunk takes over, so the frozen rows there are that held value,
    not the chunk's predictions; a chunk that honours them restarts without a jump."""
    s = ChunkScheduler(SchedulerConfig(blending="rtc", action_horizon=6, interpolate=True))
    s.merge(chunk(0.0, ramp(16, step=0.1)), now=0.05)
    times = np.arange(0.1, 0.45, 0.01)
    for t in times:
        s.pop(float(t))  # the executor runs at 100 Hz until the request at 0.44
    stamp, d = 0.44, 3  # rows due at 0.44, 0.54, 0.64: the plan ends at 0.6
    p = s.rtc_prefix(stamp, d, 16)
    assert p.frozen_steps == 4
    held = s.pop(0.59)  # the last command before the end of the executable rows
    assert s.pop(0.6) is None
    np.testing.assert_allclose(p.actions[2:4, 0], [held[0], held[0]])  # due 0.64, 0.74: holding
    assert p.actions[4, 0] == pytest.approx(0.84), "after the switch: the plan's prediction (soft rows)"
    B = np.r_[p.actions[:4, 0], p.actions[3, 0] + 0.01 * np.arange(1, 13)]
    s.merge(chunk(stamp, B), now=stamp + d * DT - 0.01)
    out = [s.pop(float(t)) for t in np.arange(0.6, 0.9, 0.01)]
    cmds = [held[0] if o is None else o[0] for o in out]  # what the robot is commanded (holds on None)
    assert np.abs(np.diff(cmds)).max() < 0.01 + 1e-9, "position jump where the new chunk takes over"


# ----------------------------------------------------------------------------- refill, config
def test_needs_refill_from_latency_and_fraction():
    s = ChunkScheduler(SchedulerConfig(action_horizon=8))
    assert s.needs_refill(0.0, 0.25), "no plan → refill"
    s.merge(chunk(0.0, ramp(16)), now=0.01)
    assert s.remaining_rows(0.35) == 4  # rows 4..7
    assert not s.needs_refill(0.35, latency_estimate=0.25)  # needs ceil(2.5)=3 rows
    assert s.needs_refill(0.45, latency_estimate=0.25)  # rows 5,6,7 left
    s.request_config(SchedulerConfig(action_horizon=8, refill_fraction=0.75))
    s.merge(chunk(0.5, ramp(16)), now=0.51)
    assert not s.needs_refill(0.65, 0.0)  # rows 2..7 = 6 left, 6 >= 0.75·8
    assert s.needs_refill(0.75, 0.0)  # 5 left


def test_config_change_takes_effect_only_at_the_next_chunk_boundary():
    s = ChunkScheduler(SchedulerConfig(blending="none", action_horizon=4))
    s.merge(chunk(0.0, np.zeros(8)), now=0.01)
    s.request_config(SchedulerConfig(blending="ensemble", action_horizon=8, ensemble_decay=0.0))
    assert s.config.action_horizon == 4 and s.config.blending == "none"
    assert s.pop(0.35) is not None
    assert s.pop(0.45) is None, "the executing chunk keeps T_a=4 although T_a=8 was requested"
    assert s.merge(chunk(0.5, 2 * np.ones(8)), now=0.51).accepted
    assert s.config.action_horizon == 8 and s.config.blending == "ensemble"
    assert s.pop(1.2)[0] == 2.0, "the new chunk executes 8 rows"
    s3 = ChunkScheduler(SchedulerConfig(blending="none", action_horizon=8))
    s3.merge(chunk(0.0, np.zeros(8)), now=0.01)
    s3.request_config(SchedulerConfig(blending="ensemble", action_horizon=8, ensemble_decay=0.0))
    s3.merge(chunk(0.2, 2 * np.ones(8)), now=0.21)
    assert s3.pop(0.3)[0] == pytest.approx(1.0), "the boundary merge itself uses the new blending"
    assert s3.stats()["config_changes"] == 1


def test_upcoming_lists_future_executable_rows():
    s = ChunkScheduler(SchedulerConfig(action_horizon=6))
    s.merge(chunk(0.0, ramp(8)), now=0.01)
    s.merge(chunk(0.2, 10 + ramp(8)), now=0.25)
    times, acts = s.upcoming(0.25, max_rows=10)
    np.testing.assert_allclose(times, [0.3, 0.4, 0.5, 0.6, 0.7])
    np.testing.assert_allclose(acts[:, 0], [11, 12, 13, 14, 15])


def test_concurrent_merge_and_pop_smoke():
    s = ChunkScheduler(SchedulerConfig(blending="ensemble", action_horizon=8))
    errors = []

    def producer():
        try:
            for i in range(300):
                s.merge(chunk(i * 0.01, np.full((8, 3), float(i)), seq=i), now=i * 0.01 + 0.005)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def consumer():
        try:
            for i in range(1500):
                a = s.pop(i * 0.002)
                assert a is None or (a.shape == (3,) and np.isfinite(a).all())
        except Exception as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=producer), threading.Thread(target=consumer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    # merges every 0.01 s, each taking over 0.1 s later: 1 governing + 10 pending segments
    assert s.stats()["segments"] <= 12, f"old segments must be garbage-collected: {s.stats()}"


def test_runtime_modules_import_neither_rclpy_nor_torch():
    code = ("import sys; import genpolicy_ros.runtime.chunk, genpolicy_ros.runtime.chunk_scheduler, "
            "genpolicy_ros.runtime.safety_filter, genpolicy_ros.runtime.rate_loop, "
            "genpolicy_ros.runtime.latency, genpolicy_ros.runtime.observation_buffer; "
            "bad = [m for m in ('rclpy', 'torch') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"forbidden imports: {r.stdout} {r.stderr}"


# ----------------------------------------------------------------------------- latency tracker
def test_latency_tracker_excludes_warmup_and_gives_delay_steps():
    from genpolicy_ros.runtime.latency import LatencyTracker

    lt = LatencyTracker(window=20, warmup=2, initial_estimate_s=0.05)
    assert lt.delay_steps(0.02) == 3, "before any sample: ceil(initial 0.05 / 0.02)"
    lt.record(5.0)
    lt.record(4.0)  # warm-up: excluded
    for v in np.linspace(0.010, 0.040, 20):
        lt.record(float(v))
    assert not lt.record(float("nan")) and not lt.record(-1.0)
    assert lt.count == 20 and lt.max == pytest.approx(0.040), "warm-up samples must not reach the window"
    p95 = lt.p95
    assert p95 == pytest.approx(np.percentile(np.linspace(0.010, 0.040, 20), 95))
    assert lt.delay_steps(0.01) == math.ceil(p95 / 0.01)
    assert lt.delay_steps(0.02, override=0) == 0 and lt.delay_steps(0.02, override=4) == 4
    lt2 = LatencyTracker(window=5, warmup=0)
    for _ in range(5):
        lt2.record(0.06)
    assert lt2.delay_steps(0.02) == 3, "p95 = 3·dt exactly must give 3, not 4 (float noise)"
    with pytest.raises(ValueError):
        lt.delay_steps(0.02, override=-2)
    for _ in range(30):
        lt.record(0.1)
    assert lt.p50 == pytest.approx(0.1), "old samples leave the window"


@pytest.mark.parametrize("blending", ["none", "rtc", "ensemble"])
def test_simulated_executor_never_starves_with_latency_aware_refill(blending):
    """100 Hz executor, model dt 0.05 s, T_a=8, generation latency 0.12 s (2.4 rows)."""
    from genpolicy_ros.runtime.latency import LatencyTracker

    dt, T_p, T_a, latency = 0.05, 16, 8, 0.12
    s = ChunkScheduler(SchedulerConfig(blending=blending, action_horizon=T_a))
    lt = LatencyTracker(window=50, warmup=0)
    ref = np.sin  # a perfect generator reproduces this trajectory

    pending, starved, chunks, errs = None, 0, 0, []
    for k in range(500):  # 5 s
        now = k * 0.01
        if pending is not None and now >= pending[0] - 1e-12:
            assert s.merge(pending[1], now).accepted
            lt.record(latency)
            pending, chunks = None, chunks + 1
        if pending is None and s.needs_refill(now, lt.estimate_s()):
            t0 = math.floor(now / dt + 1e-9) * dt  # newest observation stamp (sensor at 1/dt)
            rows = ref(t0 + dt * np.arange(T_p))
            fp = s.frozen_prefix(t0, lt.delay_steps(dt), T_p)
            if fp is not None and blending == "rtc":
                rows[: len(fp[0])] = fp[0][:, 0]
            pending = (now + latency, chunk(t0, rows, seq=chunks, dt=dt))
        a = s.pop(now)
        if a is None and not errs:
            continue  # before the first executed action
        if a is None:
            starved += 1
        else:
            errs.append(abs(a[0] - ref(math.floor(now / dt + 1e-9) * dt)))
    assert starved == 0, f"{blending}: executor starved on {starved} ticks after the first action"
    assert max(errs) < 1e-9, f"{blending}: executed action is not the row due now (err {max(errs):.2e})"
    # each chunk executes ~T_a rows minus the latency overlap: 5 s / ((8 - 3) · 0.05 s) ≈ 20 chunks
    assert 15 <= chunks <= 25, f"{blending}: {chunks} chunks in 5 s"
    assert s.stats()["rows_dropped"] >= 2 * chunks, "latency compensation must drop the rows due on arrival"


def test_interpolation_moves_linearly_between_rows_and_hits_rows_at_due_times():
    """First-order hold for executors faster than the chunk's dt (e.g. 100 Hz on 10 Hz data)."""
    actions = np.arange(8, dtype=float)[:, None] * np.array([[1.0, -2.0]])  # [8, 2] ramp
    chunk = ActionChunk(t0=0.0, dt=0.1, actions=actions)
    sched = ChunkScheduler(SchedulerConfig(blending="none", action_horizon=6, interpolate=True))
    assert sched.merge(chunk, now=0.05).accepted
    for now, expected_row in [(0.1, 1.0), (0.125, 1.25), (0.15, 1.5), (0.2, 2.0), (0.37, 3.7)]:
        out = sched.pop(now)
        assert np.allclose(out, [expected_row, -2 * expected_row]), (now, out)
    # The last executable row (5, T_a = 6) moves towards the chunk's next (predicted) row,
    # so that a chunk taking over at the end of the executable rows continues the motion;
    # row 6 itself is never commanded from this chunk.
    assert np.allclose(sched.pop(0.55), [5.5, -11.0])
    assert sched.pop(0.6) is None
    zoh = ChunkScheduler(SchedulerConfig(blending="none", action_horizon=6, interpolate=False))
    zoh.merge(chunk, now=0.05)
    assert np.allclose(zoh.pop(0.15), [1.0, -2.0])
