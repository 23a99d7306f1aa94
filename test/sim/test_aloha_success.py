"""The transfer-cube success predicate: per-stage flags and failure modes, from contact
sequences and from real episodes broken on purpose (never grasp, drop, never release,
never take over, arms colliding)."""
import numpy as np
import pytest

from genpolicy_ros.sim.reach_env import ensure_headless_gl

ensure_headless_gl()  # before the first `import mujoco`: other test files of this session render
mujoco = pytest.importorskip("mujoco")

from genpolicy_ros.sim.aloha import assets, robot  # noqa: E402
from genpolicy_ros.sim.aloha.env import AlohaTransferCubeEnv  # noqa: E402
from genpolicy_ros.sim.aloha.expert import ExpertConfig, TransferCubeExpert  # noqa: E402
from genpolicy_ros.sim.aloha.success import ContactState, TransferCubeMonitor  # noqa: E402


def state(left=0, right=0, table=False, height=0.0, arms=False, fingers=False):
    return ContactState(left_fingers_on_cube=left, right_fingers_on_cube=right, benchmark_left_finger=left > 0,
                        benchmark_right_finger=right > 0, cube_on_table=table, arms_touch=arms, fingers_touch=fingers,
                        arm_on_table=False, cube_height=height)


def judge(*states, **kw):
    monitor = TransferCubeMonitor(**kw)
    for s in states:
        monitor.update(s)
    return monitor.evaluate()


ON_TABLE, GRASPED = state(table=True), state(right=2, table=True)
LIFTED = state(right=2, height=0.1)
HANDOVER = state(left=2, right=2, height=0.2)
HELD_BY_LEFT = state(left=2, height=0.2)


def test_the_full_sequence_succeeds_with_every_stage():
    r = judge(ON_TABLE, GRASPED, LIFTED, HANDOVER, HELD_BY_LEFT)
    assert r["success"] and r["mode"] == "success"
    assert r["stages"] == {"grasped": True, "lifted": True, "transferred": True}
    assert r["benchmark_success"] and r["max_reward"] == 4


@pytest.mark.parametrize("states, mode, stages", [
    ((ON_TABLE, ON_TABLE), "never_grasped", (False, False, False)),
    ((GRASPED, GRASPED), "not_lifted", (True, False, False)),
    ((GRASPED, LIFTED, ON_TABLE), "dropped", (True, True, False)),
    ((GRASPED, LIFTED, state(height=0.1)), "dropped", (True, True, False)),  # falling, in no gripper
    ((GRASPED, LIFTED, HANDOVER), "not_released", (True, True, False)),
    ((GRASPED, LIFTED), "not_transferred", (True, True, False)),  # still in the right gripper
    ((GRASPED, LIFTED, state(left=1, height=0.15)), "dropped", (True, True, False)),  # one finger: not held
    ((GRASPED, LIFTED, HANDOVER, state(left=2, table=True)), "dropped", (True, True, False)),  # put down
])
def test_failures_are_named(states, mode, stages):
    r = judge(*states)
    assert not r["success"] and r["mode"] == mode
    assert tuple(r["stages"].values()) == stages


def test_a_pick_by_the_left_arm_alone_is_no_transfer():
    r = judge(state(left=2, table=True), HELD_BY_LEFT)
    assert not r["success"] and r["mode"] == "never_grasped"
    assert r["benchmark_success"]  # gym-aloha's reward would count it


def test_benchmark_counts_the_first_touch_of_the_left_finger_we_do_not():
    r = judge(GRASPED, LIFTED, state(left=1, right=2, height=0.2), LIFTED)
    assert r["benchmark_success"] and not r["success"]
    assert [s.benchmark_reward() for s in (ON_TABLE, GRASPED, LIFTED, HANDOVER, state(left=1, table=True))] == \
        [0, 1, 2, 4, 3]


def test_arm_collision_fails_unless_allowed():
    collided = state(left=2, right=2, height=0.2, arms=True)
    r = judge(GRASPED, LIFTED, collided, HELD_BY_LEFT)
    assert not r["success"] and r["mode"] == "arm_collision" and r["arm_collision"]
    assert r["stages"]["transferred"]  # the cube did get across
    assert judge(GRASPED, LIFTED, collided, HELD_BY_LEFT, fail_on_arm_collision=False)["success"]
    brushed = judge(GRASPED, LIFTED, state(left=2, right=2, height=0.2, fingers=True), HELD_BY_LEFT)
    assert brushed["success"] and brushed["finger_touch_steps"] == 1 and not brushed["arm_collision"]


def test_lift_needs_height():
    assert not judge(GRASPED, state(right=2, height=0.005))["stages"]["lifted"]
    assert judge(GRASPED, state(right=2, height=0.005), min_lift_m=0.0)["stages"]["lifted"]


# ------------------------------------------------------------------ real episodes
needs_assets = pytest.mark.skipif(not assets.assets_available(),
                                  reason=f"gym-aloha assets not installed: {assets.INSTALL_HINT}")


@pytest.fixture(scope="module")
def env():
    e = AlohaTransferCubeEnv()
    yield e
    e.close()


def play(env, trajectory):
    for row in trajectory:
        env.step(row, env.control_dt, with_image=False)
    return env.evaluate()


def expert_rows(env, seed):
    env.reset(seed=seed)
    rows = TransferCubeExpert.for_env(env).trajectory.copy()  # [400, 14]
    return np.vstack([rows[1:], rows[-1:]])  # row k = target for t_k + dt, as collected


@needs_assets
def test_an_expert_that_never_closes_never_grasps(env):
    rows = expert_rows(env, 11)
    rows[:, 13] = np.maximum(rows[:, 13], 1.0)
    r = play(env, rows)
    assert r["mode"] == "never_grasped" and not any(r["stages"].values()) and r["max_reward"] < 4


@needs_assets
def test_an_expert_that_opens_while_carrying_drops(env):
    rows = expert_rows(env, 12)
    rows[200:, 13] = 1.0  # opens half way to the meeting point
    r = play(env, rows)
    assert r["mode"] == "dropped" and r["stages"] == {"grasped": True, "lifted": True, "transferred": False}
    assert env.cube_pose()[2] < 0.03  # back on the table


@needs_assets
def test_an_expert_that_never_lets_go_is_not_released(env):
    c = ExpertConfig()
    rows = expert_rows(env, 13)
    rows[c.right_open_from:, 7:14] = rows[c.right_open_from, 7:14]  # right arm holds, closed
    rows[c.left_closed:, 0:7] = rows[c.left_closed, 0:7]  # left arm holds, closed
    r = play(env, rows)
    assert r["mode"] == "not_released" and not r["success"] and r["benchmark_success"]


@needs_assets
def test_a_left_arm_that_never_closes_takes_nothing_over(env):
    c = ExpertConfig()
    rows = expert_rows(env, 14)
    rows[c.right_open_from:, 7:14] = rows[c.right_open_from, 7:14]  # right keeps it
    rows[:, 6] = 1.0  # left gripper stays open
    r = play(env, rows)
    assert r["mode"] == "not_transferred" and r["stages"]["lifted"] and not r["stages"]["transferred"]


@needs_assets
def test_arms_driven_into_each_other_collide(env):
    env.reset(seed=15)
    folded = np.zeros(14)  # every arm joint at 0: both grippers reach past the table's centre line
    folded[list(robot.GRIPPER_INDICES)] = 0.5
    r = play(env, [folded] * 75)
    assert r["arm_collision"] and r["mode"] == "arm_collision" and not r["success"]
