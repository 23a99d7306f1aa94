"""Success and per-stage outcome of the transfer-cube task, from MuJoCo contacts.

**The benchmark's definition** (gym-aloha ``TransferCubeTask.get_reward``, after ACT): after
every control step, from the contact list, a reward 0-4: 1 = the right gripper's left finger
touches the cube, 2 = ... and the cube does not touch the table, 3 = the left gripper's left
finger touches the cube, 4 = ... and the cube does not touch the table; an episode succeeds
as soon as a step scores 4. That counts the very first touch of the left finger on a cube
still held aloft by the right gripper as a success. We report it as ``benchmark_success``
(and ``max_reward``) for comparison, and judge our own, stricter stages:

- **grasped**: at some control step both fingers of the *right* gripper touch the cube;
- **lifted**: at some step the right gripper grasps it, it does not touch the table and its
  centre is at least ``min_lift_m`` above its resting height;
- **transferred** (= ``success``): at the end of the episode (when :meth:`evaluate` is
  called) both fingers of the *left* gripper touch the cube, neither finger of the right
  gripper does, the cube does not touch the table and is at least ``min_lift_m`` above its
  resting height, it was lifted by the right gripper before (a hand-over, not a pick by the
  left arm), and, with ``fail_on_arm_collision``, the arms never collided: no contact
  between the two arms other than finger against finger. Fingers brushing fingers at the
  hand-over belong to the task (learned policies do it at 8-15 N; gym-aloha ignores all arm
  contacts) and are only counted (``finger_touch_steps``); a finger against the other
  gripper's body or any two links touching is a collision.

``mode`` names the outcome: ``success``, or the first failure among ``arm_collision``,
``never_grasped`` (the right gripper never held it), ``not_lifted``, ``dropped`` (it was
lifted and ends on the table or in no gripper), ``not_released`` (the right gripper still
touches it at the end), ``not_transferred`` (any other end: e.g. in the air, held by the
right gripper only). Contacts of an arm's links with the table are counted
(``table_contact_steps``) but do not fail an episode: the fingertips brush the table when
picking a cube that lies on it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

CUBE_GEOM = "red_box"
TABLE_GEOM = "table"
FINGER_GEOMS = {
    "left": ("vx300s_left/10_left_gripper_finger", "vx300s_left/10_right_gripper_finger"),
    "right": ("vx300s_right/10_left_gripper_finger", "vx300s_right/10_right_gripper_finger"),
}
ARM_ROOT_BODIES = {"left": "vx300s_left", "right": "vx300s_right"}
CUBE_HALF_SIZE = 0.02  # m, the red_box geom's half size
MAX_REWARD = 4
#: Every ``mode`` :meth:`TransferCubeMonitor.evaluate` may report, success first.
MODES = ("success", "arm_collision", "never_grasped", "not_lifted", "dropped", "not_released", "not_transferred")
STAGES = ("grasped", "lifted", "transferred")


@dataclass
class ContactState:
    """What touches what after one control step (booleans from the contact list)."""

    left_fingers_on_cube: int  # 0, 1 or 2 fingers of the left gripper touch the cube
    right_fingers_on_cube: int
    benchmark_left_finger: bool  # gym-aloha's test: the left gripper's "left finger" geom
    benchmark_right_finger: bool
    cube_on_table: bool
    arms_touch: bool  # a geom of one arm touches a geom of the other, not finger against finger
    fingers_touch: bool  # a finger of one gripper touches a finger of the other
    arm_on_table: bool  # a geom of either arm touches the table
    cube_height: float  # m, cube centre above its resting height

    def benchmark_reward(self) -> int:
        reward = 0
        if self.benchmark_right_finger:
            reward = 2 if not self.cube_on_table else 1
        if self.benchmark_left_finger:
            reward = 4 if not self.cube_on_table else 3
        return reward


class ContactClassifier:
    """Maps ``data.contact`` to a :class:`ContactState` for one compiled model."""

    def __init__(self, model):
        import mujoco

        gid = lambda name: mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, name)  # noqa: E731
        self.cube = gid(CUBE_GEOM)
        self.table = gid(TABLE_GEOM)
        self.fingers = {arm: tuple(gid(n) for n in names) for arm, names in FINGER_GEOMS.items()}
        missing = [n for n, i in [(CUBE_GEOM, self.cube), (TABLE_GEOM, self.table)] if i < 0]
        missing += [n for arm in FINGER_GEOMS for n, i in zip(FINGER_GEOMS[arm], self.fingers[arm]) if i < 0]
        if missing:
            raise ValueError(f"ALOHA model lacks the geoms {missing}")
        self.all_fingers = set(self.fingers["left"] + self.fingers["right"])
        # arm_of_geom[g] = 0 (no arm), 1 (left arm), 2 (right arm): by the geom's root body.
        self.arm_of_geom = np.zeros(model.ngeom, dtype=np.int8)  # [ngeom]
        for code, arm in ((1, "left"), (2, "right")):
            root = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, ARM_ROOT_BODIES[arm])
            for g in range(model.ngeom):
                body = int(model.geom_bodyid[g])
                while body > 0 and body != root:
                    body = int(model.body_parentid[body])
                if body == root:
                    self.arm_of_geom[g] = code

    def classify(self, data, cube_height: float) -> ContactState:
        pairs = {tuple(sorted((int(a), int(b)))) for a, b in data.contact.geom[: data.ncon]}
        touching = lambda a, b: tuple(sorted((a, b))) in pairs  # noqa: E731
        left = [touching(self.cube, f) for f in self.fingers["left"]]
        right = [touching(self.cube, f) for f in self.fingers["right"]]
        arms_touch = fingers_touch = arm_on_table = False
        for a, b in pairs:
            arm_a, arm_b = self.arm_of_geom[a], self.arm_of_geom[b]
            if arm_a and arm_b and arm_a != arm_b:
                if a in self.all_fingers and b in self.all_fingers:
                    fingers_touch = True
                else:
                    arms_touch = True
            if (arm_a and b == self.table) or (arm_b and a == self.table):
                arm_on_table = True
        return ContactState(
            left_fingers_on_cube=int(sum(left)),
            right_fingers_on_cube=int(sum(right)),
            benchmark_left_finger=left[0],
            benchmark_right_finger=right[0],
            cube_on_table=touching(self.cube, self.table),
            arms_touch=arms_touch,
            fingers_touch=fingers_touch,
            arm_on_table=arm_on_table,
            cube_height=float(cube_height),
        )


@dataclass
class TransferCubeMonitor:
    """Accumulates the stages over an episode; :meth:`update` after every control step."""

    min_lift_m: float = 0.01
    fail_on_arm_collision: bool = True
    grasped: bool = False
    lifted: bool = False
    arm_collision: bool = False
    max_reward: int = 0
    table_contact_steps: int = 0
    finger_touch_steps: int = 0
    steps: int = 0
    last: ContactState | None = field(default=None, repr=False)

    def __post_init__(self):
        if not self.min_lift_m >= 0:
            raise ValueError(f"min_lift_m must be >= 0, got {self.min_lift_m}")

    def reset(self) -> None:
        self.grasped = self.lifted = self.arm_collision = False
        self.max_reward = self.table_contact_steps = self.finger_touch_steps = self.steps = 0
        self.last = None

    def update(self, state: ContactState) -> None:
        self.steps += 1
        self.last = state
        right_grip = state.right_fingers_on_cube == 2
        self.grasped |= right_grip
        self.lifted |= right_grip and not state.cube_on_table and state.cube_height >= self.min_lift_m
        self.arm_collision |= state.arms_touch
        self.table_contact_steps += int(state.arm_on_table)
        self.finger_touch_steps += int(state.fingers_touch)
        self.max_reward = max(self.max_reward, state.benchmark_reward())

    def evaluate(self) -> dict:
        s = self.last
        in_air = s is not None and not s.cube_on_table and s.cube_height >= self.min_lift_m
        left_holds = s is not None and s.left_fingers_on_cube == 2
        right_touches = s is not None and s.right_fingers_on_cube > 0
        transferred = bool(self.lifted and in_air and left_holds and not right_touches)
        collided = self.fail_on_arm_collision and self.arm_collision
        success = transferred and not collided
        if success:
            mode = "success"
        elif collided:
            mode = "arm_collision"
        elif not self.grasped:
            mode = "never_grasped"
        elif not self.lifted:
            mode = "not_lifted"
        elif s is None or not in_air or (not left_holds and not right_touches):
            mode = "dropped"
        elif left_holds and right_touches:
            mode = "not_released"
        else:
            mode = "not_transferred"
        return {
            "success": bool(success),
            "mode": mode,
            "stages": dict(zip(STAGES, (bool(self.grasped), bool(self.lifted), transferred))),
            "benchmark_success": self.max_reward == MAX_REWARD,
            "max_reward": int(self.max_reward),
            "arm_collision": bool(self.arm_collision),
            "table_contact_steps": int(self.table_contact_steps),
            "finger_touch_steps": int(self.finger_touch_steps),
            "cube_height_m": float(s.cube_height) if s is not None else 0.0,
        }
