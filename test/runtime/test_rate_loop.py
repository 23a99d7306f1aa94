"""RateLoop: absolute deadlines, no burst after a stall, overruns, exceptions, set_rate."""
import threading

import numpy as np
import pytest

from genpolicy_ros.runtime.rate_loop import FakeClock, RateLoop


def fake_loop(rate_hz, body=None, **kw):
    clock = FakeClock(start=10.0)
    starts = []

    def callback(tick):
        starts.append((tick.grid_index, tick.deadline, clock(), tick.lateness_s))
        if body is not None:
            body(tick, clock)

    loop = RateLoop(rate_hz, callback, clock=clock, sleep=clock.sleep, **kw)
    return loop, clock, starts


def test_rate_validation():
    for bad in (0.5, 1001, float("nan"), True, "100"):
        with pytest.raises(ValueError, match="rate_hz"):
            RateLoop(bad, lambda t: None)
    loop = RateLoop(100, lambda t: None)
    with pytest.raises(ValueError):
        loop.set_rate(0)


def test_deadlines_are_absolute_and_on_time_with_a_fast_callback():
    loop, clock, starts = fake_loop(100, body=lambda t, c: c.advance(0.003))
    assert loop.run_ticks(5) == 5
    times = np.array([s[2] for s in starts])
    np.testing.assert_allclose(times, 10.0 + 0.01 * np.arange(5), atol=1e-12)
    st = loop.stats()
    assert st["overruns"] == 0 and st["missed_ticks"] == 0 and st["lateness_max_ms"] == pytest.approx(0.0, abs=1e-6)


def test_stalled_callback_skips_missed_ticks_instead_of_bursting():
    def body(tick, clock):
        if tick.index == 2:
            clock.advance(0.035)  # stall 3.5 periods

    loop, clock, starts = fake_loop(100, body=body)
    loop.run_ticks(6)
    times = np.array([s[2] for s in starts]) - 10.0
    grid = [s[0] for s in starts]
    # ticks at 0, .01, .02 (stalls until .055), then the next grid point .06, .07, .08
    np.testing.assert_allclose(times, [0.0, 0.01, 0.02, 0.06, 0.07, 0.08], atol=1e-12)
    assert grid == [0, 1, 2, 6, 7, 8]
    gaps = np.diff(times)
    assert gaps.min() >= 0.01 - 1e-12, f"burst: two callbacks {gaps.min() * 1e3:.3f} ms apart"
    st = loop.stats()
    assert st["missed_ticks"] == 3 and st["overruns"] == 1, st


def test_small_overrun_runs_the_next_tick_late_without_skipping():
    def body(tick, clock):
        if tick.index == 1:
            clock.advance(0.012)  # 1.2 periods: next tick 2 ms late, within late_tolerance=0.5

    loop, clock, starts = fake_loop(100, body=body)
    loop.run_ticks(4)
    lateness_ms = [s[3] * 1e3 for s in starts]
    assert [s[0] for s in starts] == [0, 1, 2, 3]
    assert lateness_ms[2] == pytest.approx(2.0) and lateness_ms[3] == pytest.approx(0.0, abs=1e-9)
    st = loop.stats()
    assert st["overruns"] == 1 and st["missed_ticks"] == 0
    assert st["lateness_max_ms"] == pytest.approx(2.0)


def test_callback_exceptions_are_counted_and_the_loop_continues():
    errors = []

    def body(tick, clock):
        if tick.index in (1, 3):
            raise RuntimeError(f"boom {tick.index}")

    loop, clock, starts = fake_loop(50, body=body, on_error=lambda exc, tick: errors.append(str(exc)))
    assert loop.run_ticks(6) == 6
    st = loop.stats()
    assert st["exceptions"] == 2 and "boom 3" in st["last_exception"] and st["ticks"] == 6
    assert errors == ["boom 1", "boom 3"]
    np.testing.assert_allclose(np.diff([s[2] for s in starts]), 0.02, atol=1e-12)


def test_set_rate_applies_at_the_next_tick():
    loop_ref = {}

    def body(tick, clock):
        if tick.index == 2:
            loop_ref["loop"].set_rate(50)

    loop, clock, starts = fake_loop(100, body=body)
    loop_ref["loop"] = loop
    loop.run_ticks(5)
    times = np.array([s[2] for s in starts]) - 10.0
    np.testing.assert_allclose(times, [0.0, 0.01, 0.02, 0.04, 0.06], atol=1e-12)
    assert loop.rate_hz == 50


def test_lateness_ring_buffer_is_bounded():
    loop, clock, starts = fake_loop(1000, window=16)
    loop.run_ticks(100)
    assert loop._lateness.shape == (16,) and loop.stats()["ticks"] == 100


def test_thread_mode_runs_and_stops_cleanly_despite_exceptions():
    count = {"n": 0}
    first = threading.Event()

    def cb(tick):
        count["n"] += 1
        first.set()
        if tick.index % 2:
            raise ValueError("odd tick")

    loop = RateLoop(200, cb)
    loop.start()
    assert first.wait(5.0), "loop thread never ticked"
    with pytest.raises(RuntimeError):
        loop.start()
    while loop.stats()["ticks"] < 6:
        first.clear()
        assert first.wait(5.0)
    assert loop.stop(timeout=5.0), "thread did not stop"
    assert not loop.running
    st = loop.stats()
    assert st["ticks"] >= 6 and st["exceptions"] >= 2 and st["ticks"] == count["n"]
    assert st["lateness_p50_ms"] is not None


def test_a_clock_that_goes_back_starts_a_new_grid_instead_of_waiting_for_the_old_one():
    """Simulated time restarting (a bag loop, a simulator reset) must not park the loop until
    the old timeline's next deadline."""
    clock = FakeClock(100.0)
    starts = []
    loop = RateLoop(100.0, lambda tick: starts.append(tick.started_at), clock=clock, sleep=clock.sleep)
    assert loop.run_ticks(3) == 3
    clock.t = 5.0  # the clock jumped back by 95 s
    assert loop.run_ticks(3) == 3
    np.testing.assert_allclose(starts[3:], [5.0, 5.01, 5.02])
    assert loop.stats()["missed_ticks"] == 0
