"""SafetyFilter: reliability.md rows 1, 4/14, 7, 9, 10, 11, 15 and a random fuzz."""
import numpy as np
import pytest

from genpolicy_ros.runtime.safety_filter import SafetyConfig, SafetyFilter, SafetyStatus

DT = 0.01
LOWER = np.array([-1.0, -2.0, 0.0])
UPPER = np.array([1.0, 2.0, 0.5])
VMAX = np.array([0.5, 1.0, 0.2])
AMAX = np.array([2.0, 4.0, 1.0])


def make(max_jump=0.05, margin=0.05, **kw):
    cfg = SafetyConfig(lower=LOWER, upper=UPPER, max_velocity=VMAX, max_acceleration=AMAX, dt=DT,
                       position_margin=margin, max_jump=max_jump, **kw)
    return SafetyFilter(cfg)


HOME = np.array([0.0, 0.0, 0.25])


def started(max_jump=0.05, margin=0.05):
    f = make(max_jump, margin)
    r = f.filter(HOME, HOME, 0.0)
    assert r.status == SafetyStatus.OK
    return f


def test_config_validation():
    with pytest.raises(ValueError, match="lower < upper"):
        SafetyConfig(lower=[1.0], upper=[0.0], max_velocity=1, max_acceleration=1, dt=0.01)
    with pytest.raises(ValueError, match="max_velocity"):
        SafetyConfig(lower=[0.0], upper=[1.0], max_velocity=0.0, max_acceleration=1, dt=0.01)
    with pytest.raises(ValueError, match="max_velocity"):
        SafetyConfig(lower=[0.0, 0.0], upper=[1.0, 1.0], max_velocity=[1, 2, 3], max_acceleration=1, dt=0.01)
    with pytest.raises(ValueError, match="margin"):
        SafetyConfig(lower=[0.0], upper=[1.0], max_velocity=1, max_acceleration=1, dt=0.01, position_margin=0.6)
    with pytest.raises(ValueError, match="dt"):
        SafetyConfig(lower=[0.0], upper=[1.0], max_velocity=1, max_acceleration=1, dt=float("nan"))
    cfg = SafetyConfig(lower=[0.0, 0.0], upper=[1.0, 1.0], max_velocity=2.0, max_acceleration=1, dt=0.01)
    assert cfg.max_velocity.tolist() == [2.0, 2.0]


# ---------------------------------------------------------------- row 15: nothing known yet
def test_nothing_is_commanded_before_the_first_observation():
    f = make()
    r = f.filter(HOME, None, 0.0)
    assert r.command is None and r.status == SafetyStatus.HOLD_NO_MEASURED
    r = f.filter(None, None, 0.01)
    assert r.command is None and r.status == SafetyStatus.HOLD_STARVED
    r = f.filter(np.array([np.nan, 0, 0]), np.array([np.nan, 0, 0]), 0.02)
    assert r.command is None and r.status == SafetyStatus.HOLD_NONFINITE
    assert f.stats()["invalid_measured"] == 1
    r = f.filter(None, HOME, 0.03)
    np.testing.assert_array_equal(r.command, HOME)  # hold = measured position when nothing commanded


def test_restart_without_measured_position_holds_the_last_command():
    f = started()
    r1 = f.filter(HOME + 0.004, HOME, 0.01)
    f.restart()
    r2 = f.filter(HOME + 0.008, None, 0.02)
    assert r2.status == SafetyStatus.HOLD_NO_MEASURED and np.array_equal(r2.command, r1.command)
    r3 = f.filter(HOME + 0.3, HOME + 0.004, 0.03)
    assert r3.status == SafetyStatus.RAMPING, "after restart the first action is checked again"


# ---------------------------------------------------------------- row 1: NaN / Inf
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_target_holds_the_last_command(bad):
    f = started()
    r1 = f.filter(HOME + [0.004, 0.0, 0.0], HOME, 0.01)
    target = HOME + [0.01, 0.0, 0.0]
    target[1] = bad
    r2 = f.filter(target, HOME, 0.02)
    assert r2.status == SafetyStatus.HOLD_NONFINITE and "joints [1]" in r2.reasons[0]
    np.testing.assert_array_equal(r2.command, r1.command)
    assert f.stats()["status"]["hold_nonfinite"] == 1
    r3 = f.filter(["a", 1, 2], HOME, 0.03)
    assert r3.status == SafetyStatus.HOLD_INVALID and np.array_equal(r3.command, r1.command)
    r4 = f.filter(np.zeros(4), HOME, 0.04)
    assert r4.status == SafetyStatus.HOLD_INVALID


# ---------------------------------------------------------------- row 7 / 4 / 14: starved, stale
def test_starved_and_stale_hold_without_jump():
    f = started()
    r1 = f.filter(HOME + 0.003, HOME, 0.01)
    r2 = f.filter(None, HOME, 0.02)
    assert r2.status == SafetyStatus.HOLD_STARVED and np.array_equal(r2.command, r1.command)
    r3 = f.filter(HOME + 0.5, HOME, 0.03, stale=True)
    assert r3.status == SafetyStatus.HOLD_STALE and np.array_equal(r3.command, r1.command)


# ---------------------------------------------------------------- row 9: far target
def test_far_target_is_approached_under_velocity_and_acceleration_limits():
    f = started()
    target = np.array([0.9, -1.5, 0.45])
    cmds = [HOME]
    for i in range(1, 1000):
        r = f.filter(target, cmds[-1], i * DT)
        cmds.append(r.command)
        if np.array_equal(r.command, target):
            break
    cmds = np.array(cmds)  # [n, 3]
    steps = np.diff(cmds, axis=0)
    vel = steps / DT
    acc = np.diff(vel, axis=0) / DT
    assert np.array_equal(cmds[-1], target), f"target not reached after {len(cmds)} steps: {cmds[-1]}"
    assert (np.abs(vel) <= VMAX + 1e-9).all(), f"max |v| {np.abs(vel).max(0)} > {VMAX}"
    assert (np.abs(acc) <= AMAX + 1e-6).all(), f"max |a| {np.abs(acc).max(0)} > {AMAX}"
    overshoot = np.max(np.sign(target - HOME) * (cmds - target), axis=0)
    assert (overshoot <= 1e-9).all(), f"overshoot {overshoot}"
    # trapezoidal profile time for joint 1 (slowest): d/v + v/a = 1.5/1 + 1/4 = 1.75 s
    assert len(cmds) * DT < 1.75 * 1.2, f"took {len(cmds) * DT:.2f} s, profile needs ~1.75 s"
    assert f.stats()["status"]["clamped_acceleration"] > 0 and f.stats()["status"]["clamped_velocity"] > 0


def test_moving_target_is_tracked_exactly_once_up_to_speed():
    f = started()
    cmd = HOME
    errs = []
    for i in range(1, 300):
        target = HOME + np.array([0.3, -0.5, 0.05]) * (i * DT)  # constant velocity below the limits
        r = f.filter(target, cmd, i * DT)
        cmd = r.command
        errs.append(np.abs(cmd - target).max())
    assert max(errs[100:]) < 1e-9, f"steady-state tracking error {max(errs[100:]):.2e}"
    assert max(errs[:20]) > 1e-3, "starting from rest the acceleration limit must cause a transient lag"


# ---------------------------------------------------------------- row 10: joint limits
def test_target_outside_limits_is_clamped_with_margin():
    f = make(margin=0.05)
    start = np.array([0.9, 1.9, 0.4])
    f.filter(start, start, 0.0)
    cmd = start
    for i in range(1, 200):
        r = f.filter(np.array([5.0, 1e9, -3.0]), cmd, i * DT)
        cmd = r.command
        assert (cmd <= UPPER - 0.05 + 1e-12).all() and (cmd >= LOWER + 0.05 - 1e-12).all()
    np.testing.assert_allclose(cmd, [0.95, 1.95, 0.05])
    assert r.status == SafetyStatus.CLAMPED_POSITION and "clamped" in r.reasons[0]


def test_measured_position_inside_the_margin_band_does_not_jump():
    f = make(margin=0.1, max_jump=0.0)
    measured = np.array([0.98, 0.0, 0.25])  # inside [upper - margin, upper]
    r = f.filter(np.array([1.0, 0.0, 0.25]), measured, 0.0)
    assert abs(r.command[0] - 0.98) <= VMAX[0] * DT + 1e-12
    assert r.command[0] <= 0.98


# ---------------------------------------------------------------- first action after (re)start
def test_first_action_close_to_measured_goes_direct_far_one_ramps():
    f = make(max_jump=0.05)
    r = f.filter(HOME + 0.03, HOME, 0.0)
    assert r.status == SafetyStatus.OK and np.allclose(r.command, HOME + 0.03)
    g = make(max_jump=0.05)
    r = g.filter(HOME + np.array([0.5, 0.0, 0.0]), HOME, 0.0)
    assert r.status == SafetyStatus.RAMPING
    assert abs(r.command[0] - HOME[0]) <= VMAX[0] * DT + 1e-12, "ramp starts from the measured position"
    statuses = [g.filter(HOME + np.array([0.5, 0.0, 0.0]), r.command, i * DT).status for i in range(1, 300)]
    assert SafetyStatus.RAMPING in statuses and statuses[-1] == SafetyStatus.OK
    assert g.stats()["status"]["ramping"] >= 2


# ---------------------------------------------------------------- row 11: pause latch
def test_pause_latches_until_resume_and_a_fresh_measured_position():
    f = started()
    r1 = f.filter(HOME + 0.004, HOME, 0.01)
    f.pause()
    r = f.filter(HOME + 0.008, HOME + 0.004, 0.02, measured_stamp=0.02)
    assert r.status == SafetyStatus.HOLD_PAUSED and np.array_equal(r.command, r1.command)
    r = f.filter(HOME + 0.008, HOME + 0.004, 0.03, measured_stamp=0.03)
    assert r.status == SafetyStatus.HOLD_PAUSED, "pause is latched"
    f.resume(now=0.05)
    r = f.filter(HOME + 0.008, HOME + 0.004, 0.06, measured_stamp=0.04)  # measured before resume
    assert r.status == SafetyStatus.HOLD_PAUSED and "fresh" in r.reasons[0]
    r = f.filter(HOME + 0.008, None, 0.07)
    assert r.status == SafetyStatus.HOLD_PAUSED
    r = f.filter(HOME + 0.008, HOME + 0.004, 0.08, measured_stamp=0.075)
    assert r.status == SafetyStatus.OK and not f.paused
    np.testing.assert_allclose(r.command, HOME + 0.008)
    # after resume the first action is checked against the measured position again
    f.pause()
    f.resume(now=1.0)
    r = f.filter(HOME + 0.5, HOME + 0.008, 1.01, measured_stamp=1.01)
    assert r.status == SafetyStatus.RAMPING


# ---------------------------------------------------------------- fuzz
def test_fuzz_every_output_is_finite_in_limits_and_rate_limited():
    rng = np.random.default_rng(1234)
    # max_jump below v_max·dt so that the rate bound holds for every consecutive pair
    f = make(max_jump=0.004, margin=0.05)
    span = UPPER - LOWER
    prev = None
    measured = HOME.copy()
    n_cmd = 0
    for i in range(10_000):
        kind = rng.integers(0, 10)
        if kind <= 3:
            target = LOWER + span * rng.uniform(-3, 4, size=3)
        elif kind == 4:
            target = np.where(rng.random(3) < 0.5, np.nan, 0.0)
        elif kind == 5:
            target = rng.choice([np.inf, -np.inf, 1e300, -1e300, 1e-300], size=3)
        elif kind == 6:
            target = None
        elif kind == 7:
            target = rng.normal(size=rng.integers(1, 6))
        else:
            target = measured + rng.normal(scale=0.01, size=3)
        meas = measured if rng.random() > 0.05 else [None, np.array([np.nan, 0, 0])][int(rng.integers(0, 2))]
        if rng.random() < 0.002:
            f.pause()
        if rng.random() < 0.01:
            f.resume(now=i * DT)
        r = f.filter(target, meas, i * DT, measured_stamp=i * DT, stale=bool(rng.random() < 0.01))
        if r.command is None:
            assert prev is None, f"step {i}: command disappeared after one was issued"
            continue
        c = r.command
        n_cmd += 1
        assert np.isfinite(c).all(), f"step {i}: non-finite {c}"
        assert (c >= LOWER).all() and (c <= UPPER).all(), f"step {i}: {c} outside limits"
        if prev is not None:
            step = np.abs(c - prev)
            assert (step <= VMAX * DT + 1e-12).all(), f"step {i}: |Δ|={step} > {VMAX * DT} ({r.status})"
        prev = c
        measured = c.copy()  # the robot follows its command
    counts = f.stats()["status"]
    assert n_cmd > 9000 and counts["hold_nonfinite"] > 500 and counts["hold_paused"] > 0, counts
