"""SafetyFilter: reliability.md rows 1, 4/14, 7, 9, 10, 11, 15, continuity by construction
(issue 9 §1), the tracking check, and a random fuzz."""
import numpy as np
import pytest

from genpolicy_ros.runtime.safety_filter import SafetyConfig, SafetyFilter, SafetyStatus

DT = 0.01
LOWER = np.array([-1.0, -2.0, 0.0])
UPPER = np.array([1.0, 2.0, 0.5])
VMAX = np.array([0.5, 1.0, 0.2])
AMAX = np.array([2.0, 4.0, 1.0])
TOL = 1e-9


def make(max_jump=0.05, margin=0.05, **kw):
    cfg = SafetyConfig(lower=LOWER, upper=UPPER, max_velocity=VMAX, max_acceleration=AMAX, dt=DT,
                       position_margin=margin, max_jump=max_jump, **kw)
    return SafetyFilter(cfg)


HOME = np.array([0.0, 0.0, 0.25])


def started(max_jump=0.05, margin=0.05, **kw):
    """A filter that has issued its first command at HOME (anchor confirmed by 3 samples)."""
    f = make(max_jump, margin, **kw)
    for i in range(3):
        r = f.filter(HOME, HOME, i * DT, measured_stamp=i * DT)
    assert r.status == SafetyStatus.OK and np.allclose(r.command, HOME)
    return f


def assert_continuous(commands, vmax=VMAX, amax=AMAX, dt=DT, first_velocity=None):
    """Every consecutive pair within the velocity cap and every velocity change within a·dt."""
    commands = np.asarray(commands)
    v = np.diff(commands, axis=0) / dt  # [N-1, D]
    if first_velocity is not None:
        v = np.vstack([first_velocity, v])
    dv = np.abs(np.diff(v, axis=0))
    assert (dv <= amax * dt + TOL).all(), f"acceleration violated: max |Δv| {dv.max(axis=0)}"
    cap = np.maximum(vmax, np.abs(v[:-1]) - amax * dt)
    assert (np.abs(v[1:]) <= cap + TOL).all(), "velocity cap violated"


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
    with pytest.raises(ValueError, match="max_tracking_error"):
        SafetyConfig(lower=[0.0], upper=[1.0], max_velocity=1, max_acceleration=1, dt=0.01, max_tracking_error=0)
    with pytest.raises(ValueError, match="confirm_samples"):
        SafetyConfig(lower=[0.0], upper=[1.0], max_velocity=1, max_acceleration=1, dt=0.01, confirm_samples=0)
    cfg = SafetyConfig(lower=[0.0, 0.0], upper=[1.0, 1.0], max_velocity=2.0, max_acceleration=1, dt=0.01)
    assert cfg.max_velocity.tolist() == [2.0, 2.0] and cfg.window_ticks == 50


# ---------------------------------------------------------------- row 15: nothing known yet
def test_nothing_is_commanded_before_the_first_action_and_a_confirmed_anchor():
    f = make()
    r = f.filter(HOME, None, 0.0)
    assert r.command is None and r.status == SafetyStatus.HOLD_NO_MEASURED
    r = f.filter(None, HOME, 0.01, measured_stamp=0.01)
    assert r.command is None and r.status == SafetyStatus.HOLD_STARVED, "holds before the first action: nothing"
    r = f.filter(np.array([np.nan, 0, 0]), np.array([np.nan, 0, 0]), 0.02, measured_stamp=0.02)
    assert r.command is None and r.status == SafetyStatus.HOLD_NONFINITE
    assert f.stats()["invalid_measured"] == 1
    r = f.filter(HOME, HOME, 0.03, measured_stamp=0.03)
    assert r.command is None and "consistent measured positions" in r.reasons[0], "2 samples do not confirm"
    r = f.filter(HOME, HOME, 0.04, measured_stamp=0.04)
    np.testing.assert_array_equal(r.command, HOME)
    assert f.has_commanded


def test_one_bogus_measured_position_cannot_place_the_anchor():
    f = make()
    far = HOME + np.array([0.9, 0.0, 0.0])
    for i, m in enumerate([HOME, HOME, far]):
        r = f.filter(HOME, m, i * DT, measured_stamp=i * DT)
        assert r.command is None
    # Three consistent measurements again: the anchor is the robot's position, not `far`.
    for i in range(3, 6):
        r = f.filter(HOME, HOME, i * DT, measured_stamp=i * DT)
    np.testing.assert_array_equal(r.command, HOME)


def test_repeated_stamp_is_not_a_new_measurement():
    f = make()
    for i in range(5):
        r = f.filter(HOME, HOME, i * DT, measured_stamp=1.0)
    assert r.command is None, "one message seen five times is one measurement"


# ---------------------------------------------------------------- row 1: NaN / Inf
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_target_holds_the_last_command(bad):
    f = started()
    r1 = f.filter(HOME + 0.004, HOME, 0.03)
    target = HOME.copy()
    target[1] = bad
    r2 = f.filter(target, HOME, 0.04)
    assert r2.status == SafetyStatus.HOLD_NONFINITE and np.isfinite(r2.command).all()
    assert_continuous([HOME, r1.command, r2.command], first_velocity=np.zeros(3))


# ---------------------------------------------------------------- rows 4, 7: stale / starved
def test_a_hold_is_a_braking_stop_that_never_jumps():
    f = started()
    commands = [HOME]
    target = HOME + np.array([0.8, 1.5, 0.2])
    for i in range(60):  # get moving at full speed
        commands.append(f.filter(target, commands[-1], 0.03 + i * DT).command)
    assert np.abs(np.diff(commands, axis=0)[-1] / DT).max() > 0.9 * VMAX.min()
    statuses = []
    for i, stale in enumerate([False, True] * 20 + [True] * 40):
        r = f.filter(None, commands[-1], 1.0 + i * DT, stale=stale)
        statuses.append(r.status)
        commands.append(r.command)
    assert SafetyStatus.HOLD_STALE in statuses and SafetyStatus.HOLD_STARVED in statuses
    assert_continuous(commands, first_velocity=np.zeros(3))
    assert np.allclose(commands[-1], commands[-2]), "the braking stop ends standing still"


# ---------------------------------------------------------------- row 9: far target
def test_far_target_is_approached_under_velocity_and_acceleration_limits():
    f = started()
    target = np.array([0.9, 1.8, 0.45])
    commands = [HOME]
    for i in range(1000):
        r = f.filter(target, commands[-1], 0.03 + i * DT)
        commands.append(r.command)
    assert_continuous(commands, first_velocity=np.zeros(3))
    np.testing.assert_allclose(commands[-1], np.clip(target, LOWER + 0.05, UPPER - 0.05), atol=1e-9)


def test_moving_target_is_tracked_exactly_once_up_to_speed():
    f = started()
    speed = 0.5 * VMAX
    commands, targets = [HOME], []
    for i in range(150):
        targets.append(HOME + speed * (i + 1) * DT)
        commands.append(f.filter(targets[-1], commands[-1], 0.03 + i * DT).command)
    np.testing.assert_allclose(commands[-1], targets[-1], atol=1e-6)
    assert_continuous(commands, first_velocity=np.zeros(3))


# ---------------------------------------------------------------- row 10: limits
def test_target_outside_limits_is_clamped_with_margin():
    f = started()
    c = HOME
    for i in range(2000):
        c = f.filter(np.array([5.0, -5.0, 9.0]), c, 0.03 + i * DT).command
    np.testing.assert_allclose(c, [0.95, -1.95, 0.45], atol=1e-9)


def test_measured_position_inside_the_margin_band_does_not_jump():
    measured = np.array([0.98, 0.0, 0.25])  # inside [upper - margin, upper]
    f = make(margin=0.05)
    for i in range(3):
        r = f.filter(np.array([1.0, 0.0, 0.25]), measured, i * DT, measured_stamp=i * DT)
    assert abs(r.command[0] - 0.98) <= VMAX[0] * DT + 1e-12
    assert r.command[0] <= 0.98


# ---------------------------------------------------------------- continuity across restarts
def test_restart_steps_from_the_last_command_not_from_the_measured_position():
    f = started()
    r1 = f.filter(HOME + 0.004, HOME, 0.03)
    f.restart()  # e.g. lifecycle activate / plan reset
    measured = HOME + np.array([0.2, 0.0, 0.0])  # within tolerance, but not where we commanded
    r2 = f.filter(HOME + np.array([0.5, 0.0, 0.0]), measured, 0.04, measured_stamp=0.04)
    assert r2.status == SafetyStatus.RAMPING
    assert np.abs(r2.command - r1.command).max() <= AMAX.max() * DT * DT + 0.004 + TOL, \
        "after a restart the command continues from the last command"


def test_first_action_far_from_the_anchor_ramps():
    f = make(max_jump=0.05)
    for i in range(3):
        r = f.filter(HOME + np.array([0.5, 0.0, 0.0]), HOME, i * DT, measured_stamp=i * DT)
    assert r.status == SafetyStatus.RAMPING
    assert np.abs(r.command - HOME).max() <= AMAX.max() * DT * DT + TOL, "ramp starts at rest from the anchor"
    statuses = [f.filter(HOME + np.array([0.5, 0.0, 0.0]), None, i * DT).status for i in range(3, 400)]
    assert SafetyStatus.RAMPING in statuses and statuses[-1] == SafetyStatus.OK


def test_lowering_the_velocity_limit_while_moving_decelerates_at_the_acceleration_limit():
    f = started()
    commands = [HOME]
    for i in range(80):
        commands.append(f.filter(HOME + np.array([0.9, 0.0, 0.0]), None, 0.03 + i * DT).command)
    v0 = (commands[-1] - commands[-2]) / DT
    assert v0[0] == pytest.approx(VMAX[0])
    f.reconfigure(SafetyConfig(lower=LOWER, upper=UPPER, max_velocity=VMAX / 10, max_acceleration=AMAX, dt=DT,
                               position_margin=0.05))
    for i in range(80):
        commands.append(f.filter(HOME + np.array([0.9, 0.0, 0.0]), None, 1.0 + i * DT).command)
    assert_continuous(commands, first_velocity=np.zeros(3))
    assert abs((commands[-1][0] - commands[-2][0]) / DT) <= VMAX[0] / 10 + TOL


def test_a_new_control_period_keeps_the_velocity_continuous():
    f = started()
    commands = [HOME]
    for i in range(80):
        commands.append(f.filter(HOME + np.array([0.9, 0.0, 0.0]), None, 0.03 + i * DT).command)
    v_before = (commands[-1] - commands[-2]) / DT
    f.reconfigure(SafetyConfig(lower=LOWER, upper=UPPER, max_velocity=VMAX, max_acceleration=AMAX, dt=2 * DT,
                               position_margin=0.05))
    c = f.filter(HOME + np.array([0.9, 0.0, 0.0]), None, 1.0).command
    v_after = (c - commands[-1]) / (2 * DT)
    assert (np.abs(v_after - v_before) <= AMAX * 2 * DT + TOL).all()


# ---------------------------------------------------------------- tracking check (issue 9 §1)
def test_a_bogus_measured_position_holds_without_a_jump_and_resumes_only_when_consistent():
    f = started()
    commands = [HOME]
    for i in range(30):
        commands.append(f.filter(HOME + np.array([0.3, 0.0, 0.0]), commands[-1], 0.03 + i * DT,
                                 measured_stamp=0.03 + i * DT).command)
    bogus = HOME + np.array([-0.9, 1.5, 0.0])  # e.g. the position carried by a stale message
    r = f.filter(HOME + np.array([0.3, 0.0, 0.0]), bogus, 0.5, measured_stamp=0.5)
    assert r.status == SafetyStatus.HOLD_TRACKING and "commanded path" in r.reasons[0]
    commands.append(r.command)
    assert f.stats()["tracking_fault"] and f.stats()["tracking_faults"] == 1
    statuses = []
    for i in range(20):  # the robot (still where it was commanded) reports again
        r = f.filter(HOME + np.array([0.3, 0.0, 0.0]), commands[-1], 0.51 + i * DT, measured_stamp=0.51 + i * DT)
        statuses.append(r.status)
        commands.append(r.command)
    assert statuses[:2] == [SafetyStatus.HOLD_TRACKING] * 2, "resume needs consistent measurements, not one"
    assert statuses[-1] in (SafetyStatus.OK, SafetyStatus.RAMPING, SafetyStatus.CLAMPED_VELOCITY,
                            SafetyStatus.CLAMPED_ACCELERATION)
    assert_continuous(commands, first_velocity=np.zeros(3))
    assert np.abs(np.asarray(commands) - bogus).min(axis=0)[0] > 0.5, "never moved toward the bogus position"


def test_a_robot_that_does_not_follow_makes_the_filter_hold():
    f = started(max_tracking_error=0.1)
    stuck = HOME.copy()
    r = None
    for i in range(200):
        r = f.filter(HOME + np.array([0.9, 0.0, 0.0]), stuck, 0.03 + i * DT, measured_stamp=0.03 + i * DT)
        if r.status == SafetyStatus.HOLD_TRACKING:
            break
    assert r.status == SafetyStatus.HOLD_TRACKING
    assert r.command[0] - stuck[0] < 0.1 + VMAX[0] * 0.5 + 0.2, "detected within the window"


# ---------------------------------------------------------------- row 11: pause latch
def test_pause_latches_until_resume_and_a_fresh_measured_position():
    f = started()
    r1 = f.filter(HOME + 0.0001, HOME, 0.03)
    f.pause()
    r = f.filter(HOME + 0.008, HOME, 0.04, measured_stamp=0.04)
    assert r.status == SafetyStatus.HOLD_PAUSED
    held = f.filter(HOME + 0.008, HOME, 0.05, measured_stamp=0.05)
    assert held.status == SafetyStatus.HOLD_PAUSED, "pause is latched"
    assert np.allclose(held.command, r.command) and np.abs(r.command - r1.command).max() < 1e-3
    f.resume(now=0.07)
    r = f.filter(HOME + 0.008, HOME, 0.08, measured_stamp=0.06)  # measured before resume
    assert r.status == SafetyStatus.HOLD_PAUSED and "fresh" in r.reasons[0]
    r = f.filter(HOME + 0.008, None, 0.09)
    assert r.status == SafetyStatus.HOLD_PAUSED
    r = f.filter(HOME + 0.008, HOME, 0.10, measured_stamp=0.095)
    assert not r.status.is_hold and not f.paused


# ---------------------------------------------------------------- fuzz
def test_fuzz_every_output_is_finite_in_limits_and_continuous():
    rng = np.random.default_rng(1234)
    f = make(max_jump=0.004, margin=0.05)
    span = UPPER - LOWER
    commands = []
    measured = HOME.copy()
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
        meas = measured if rng.random() > 0.05 else [None, np.array([np.nan, 0, 0]),
                                                     LOWER + span * rng.random(3)][int(rng.integers(0, 3))]
        if rng.random() < 0.002:
            f.pause()
        if rng.random() < 0.01:
            f.resume(now=i * DT)
        if rng.random() < 0.002:
            f.restart()
        r = f.filter(target, meas, i * DT, measured_stamp=i * DT, stale=bool(rng.random() < 0.01))
        if r.command is None:
            assert not commands, f"step {i}: command disappeared after one was issued"
            continue
        c = r.command
        if not commands:
            first_velocity = r.velocity
        assert np.isfinite(c).all(), f"step {i}: non-finite {c}"
        assert (c >= LOWER).all() and (c <= UPPER).all(), f"step {i}: {c} outside limits"
        commands.append(c)
        measured = c.copy()  # the robot follows its command
    assert len(commands) > 9000
    assert_continuous(commands, first_velocity=first_velocity)
    counts = f.stats()["status"]
    assert counts["hold_nonfinite"] > 500 and counts["hold_paused"] > 0 and counts["hold_tracking"] > 0, counts
