"""Scripted expert of the transfer-cube task (ROS-free): end-effector waypoints turned into
a 14-dim joint trajectory by inverse kinematics (:mod:`.kinematics`).

Like ACT's scripted policy the expert plans the whole episode from the reset state (the cube
pose) and then plays it open loop; its tool-centre-point waypoints are its own:

right arm (picks)                          left arm (receives)
  approach above the cube, open              wait, then move to the meeting point's left
  descend around the cube                    (horizontal, fingers closing vertically), open
  close                                      ...
  lift, carry the cube to the meeting point  slide over the cube
  ...                                        close
  open (release)                             ...
  retreat backwards and up                   pull the cube towards the left, hold

The right gripper grasps the cube's ±y faces pitched ``pick_pitch_deg`` down from the
horizontal; the left gripper comes in horizontally, rolled 90°, and grasps its top and
bottom faces, so the fingers of the two grippers never meet. The cube is handed over at
``meet_xyz`` (its centre). Between waypoints, positions, pitch, roll and gripper openings
follow a minimum-jerk profile (so every joint starts and stops each segment at rest); the
gripper's heading stays in its arm's vertical plane (:func:`interpolate`). Joint targets
respect the joint limits (the IK clips). Over 200 random placements every command stays
below 1.9 rad/s (grippers: opening/s) and 9 rad/s² (``check_expert``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.transform import Rotation

from . import robot
from .kinematics import ArmIK

_ARM_SLOTS = {"left": slice(0, 6), "right": slice(7, 13)}  # arm joints inside the 14-vector


def minimum_jerk(s):
    s = np.clip(np.asarray(s, dtype=float), 0.0, 1.0)
    return s**3 * (10.0 - 15.0 * s + 6.0 * s**2)


@dataclass(frozen=True)
class Waypoint:
    step: int  # control step (row) at which the pose is reached
    position: tuple  # TCP position (m, world)
    pitch: float  # rad below the horizontal of the gripper's pointing (x) axis
    roll: float  # rad about the pointing axis (0: fingers closing horizontally)
    gripper: float  # normalised opening, 0 closed, 1 open


@dataclass(frozen=True)
class ExpertConfig:
    """Waypoint timing (control steps at 50 Hz) and geometry; validated on construction."""

    meet_xyz: tuple[float, float, float] = (0.0, 0.5, 0.25)  # cube centre at the hand-over (m)
    pick_pitch_deg: float = 60.0  # right gripper pointing this far below the horizontal
    grasp_height_m: float = 0.008  # right TCP above the cube centre when grasping (tips clear the table)
    approach_height_m: float = 0.10  # above the grasp pose before descending
    receive_standoff_m: float = 0.12  # left TCP waits this far left (-x) of the meeting point
    retreat_m: float = 0.10  # right gripper backs off this far after releasing
    # Control steps of the waypoints. Gripper moves take 50 steps (1 s): on the minimum-jerk
    # profile a full 0-1 move peaks at 1.875 opening/s, inside the policy node's default
    # 2 rad/s cap, which applies to every commanded dimension alike.
    right_above: int = 70
    right_down: int = 100
    right_closed: int = 150
    right_lifted: int = 180
    right_at_meet: int = 235
    left_ready: int = 150
    left_in: int = 265
    left_closed: int = 315
    right_open_from: int = 300  # the left fingers grip the cube (opening ~0.6) from about step 290
    right_open: int = 350
    right_retreated: int = 390
    left_away: int = 390
    episode_steps: int = 400

    def __post_init__(self):
        order = [self.right_above, self.right_down, self.right_closed, self.right_lifted, self.right_at_meet,
                 self.left_in, self.right_open_from, self.right_open, self.right_retreated]
        if order != sorted(order) or len(set(order)) != len(order) or order[0] <= 0:
            raise ValueError(f"expert waypoint steps must increase: {order}")
        if not (self.right_at_meet <= self.left_in < self.left_closed and 0 < self.left_ready <= self.left_in
                and self.right_open_from < self.left_closed and self.right_open < self.left_away <= self.episode_steps
                and self.right_retreated <= self.episode_steps):
            raise ValueError("expert timing: the left arm must wait for the cube, the right release before the "
                             "left pulls away, all within episode_steps")
        if not 0 < self.pick_pitch_deg <= 90:
            raise ValueError(f"pick_pitch_deg must lie in (0, 90], got {self.pick_pitch_deg}")


def gripper_rotation(heading, pitch: float, roll: float) -> Rotation:
    """Orientation of a gripper whose pointing axis (its x axis, towards the fingertips) has
    the horizontal direction ``heading`` [2] and points ``pitch`` rad below the horizontal,
    rolled by ``roll`` rad about that axis (roll 0: the fingers close horizontally, across
    the heading; +pi/2: they close vertically)."""
    h = np.asarray(heading, dtype=float)
    h = h / np.linalg.norm(h)
    x = np.array([np.cos(pitch) * h[0], np.cos(pitch) * h[1], -np.sin(pitch)])
    y = np.cross([0.0, 0.0, 1.0], [h[0], h[1], 0.0])
    y /= np.linalg.norm(y)
    base = np.column_stack([x, y, np.cross(x, y)])
    return Rotation.from_matrix(base) * Rotation.from_rotvec([roll, 0.0, 0.0])


def gripper_matrices(heading: np.ndarray, pitch: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """:func:`gripper_rotation` for many poses at once: headings [N, 2], pitches [N] and rolls
    [N] (rad) -> rotation matrices [N, 3, 3]."""
    h = heading / np.linalg.norm(heading, axis=1, keepdims=True)  # [N, 2]
    cp, sp = np.cos(pitch), np.sin(pitch)  # [N]
    x = np.stack([cp * h[:, 0], cp * h[:, 1], -sp], axis=1)  # [N, 3] pointing axis
    y = np.stack([-h[:, 1], h[:, 0], np.zeros(len(h))], axis=1)  # [N, 3] = z x heading (unit)
    z = np.cross(x, y)  # [N, 3]
    cr, sr = np.cos(roll)[:, None], np.sin(roll)[:, None]  # [N, 1]
    # base [x y z] times the rotation by `roll` about x: columns x, cr*y + sr*z, -sr*y + cr*z
    return np.stack([x, cr * y + sr * z, -sr * y + cr * z], axis=2)  # [N, 3, 3]


def interpolate(waypoints: list[Waypoint], steps: int,
                base_xy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per control step 0..steps-1: TCP positions [steps, 3], rotation matrices [steps, 3, 3],
    gripper openings [steps]. Each segment follows a minimum-jerk profile; the heading of
    the gripper is the direction from the arm's base ``base_xy`` [2] to the TCP, so that the
    arm reaches every pose with forearm roll and wrist rotate (nearly) still: a heading
    fixed in the world would be held by counter-rotating the two, which is singular while
    the wrist angle passes zero (we measured 14 rad/s roll flips that way)."""
    k = np.arange(steps)  # [steps]
    marks = np.array([w.step for w in waypoints])  # [W] non-decreasing
    nxt = np.minimum(np.searchsorted(marks, k, side="left"), len(waypoints) - 1)  # first waypoint with step >= k
    prev = np.maximum(nxt - 1, 0)
    span = (marks[nxt] - marks[prev]).astype(float)  # [steps]
    s = np.where(span > 0, minimum_jerk((k - marks[prev]) / np.where(span > 0, span, 1.0)), 1.0)  # [steps]
    pos = np.array([w.position for w in waypoints], dtype=float)  # [W, 3]
    pitch_w = np.array([w.pitch for w in waypoints])  # [W]
    roll_w = np.array([w.roll for w in waypoints])
    grip_w = np.array([w.gripper for w in waypoints])

    def mix(v: np.ndarray) -> np.ndarray:  # waypoint values [W, ...] -> per-step blend [steps, ...]
        w = s.reshape((-1,) + (1,) * (v.ndim - 1))
        return (1 - w) * v[prev] + w * v[nxt]

    positions = mix(pos)  # [steps, 3]
    matrices = gripper_matrices(positions[:, :2] - np.asarray(base_xy, dtype=float), mix(pitch_w), mix(roll_w))
    return positions, matrices, mix(grip_w)


@dataclass
class TransferCubeExpert:
    """Plans the joint trajectory for one episode; ``trajectory[k]`` [14] is the command of
    control step k (time ``k * dt`` after the reset)."""

    model: object  # compiled ALOHA model (env.model)
    start_q: np.ndarray  # [14] joint positions at the reset (grippers normalised)
    cube_xyz: np.ndarray  # [3] cube centre at the reset
    config: ExpertConfig = field(default_factory=ExpertConfig)
    dt: float = 0.02

    def __post_init__(self):
        self.start_q = np.asarray(self.start_q, dtype=float)
        self.cube_xyz = np.asarray(self.cube_xyz, dtype=float)
        self.ik = {arm: ArmIK(self.model, arm) for arm in robot.ARMS}
        self.waypoints = self._waypoints()  # arm -> [Waypoint]
        n = self.config.episode_steps
        # Rows are solved on demand, in order (each warm-started from the one before), so the
        # first command is ready in milliseconds (a driver over ROS must answer its first
        # observation before the robot has moved on); ``trajectory`` solves them all.
        self._targets = {arm: interpolate(self.waypoints[arm], n, self.ik[arm].base_xy) for arm in robot.ARMS}
        self._rows = np.empty((n, 14))  # [N, 14] solved rows 0.._solved-1
        self._errors = np.zeros((n, 2))  # [N, 2] m, IK position error per arm
        self._q = {arm: self.start_q[_ARM_SLOTS[arm]].copy() for arm in robot.ARMS}  # [6] warm starts
        self._solved = 0

    @classmethod
    def for_env(cls, env, config: ExpertConfig | None = None) -> "TransferCubeExpert":
        """The expert for ``env``'s current episode (call right after ``env.reset``)."""
        return cls(env.model, env.joint_positions(), env.cube_pose()[:3], config or ExpertConfig(),
                   dt=env.control_dt)

    def _start_tcp(self, arm: str) -> tuple[np.ndarray, float, float]:
        """Start TCP position [3], pitch and roll (rad) of ``arm``."""
        slots = slice(0, 6) if arm == "left" else slice(7, 13)
        p, R = self.ik[arm].forward(self.start_q[slots])
        pitch = float(-np.arcsin(np.clip(R[2, 0], -1.0, 1.0)))
        roll = float(np.arctan2(R[2, 1], R[2, 2]))
        return p, pitch, roll

    def _waypoints(self) -> dict:
        c = self.config
        cube, meet = self.cube_xyz, np.asarray(c.meet_xyz, dtype=float)
        pitch = np.deg2rad(c.pick_pitch_deg)
        grasp = cube + [0.0, 0.0, c.grasp_height_m]
        above = grasp + [0.0, 0.0, c.approach_height_m]
        carry = meet + [0.0, 0.0, c.grasp_height_m]  # right TCP with the cube centred at meet_xyz
        pointing = gripper_rotation(meet[:2] - self.ik["right"].base_xy, pitch, 0.0).as_matrix()[:, 0]
        retreat = carry - c.retreat_m * pointing + [0.0, 0.0, 0.05]  # back off along the gripper, and up
        p0r, pitch0r, roll0r = self._start_tcp("right")
        p0l, pitch0l, roll0l = self._start_tcp("left")
        g0l, g0r = (self.start_q[i] for i in robot.GRIPPER_INDICES)
        right = [
            Waypoint(0, p0r, pitch0r, roll0r, g0r),
            Waypoint(c.right_above, above, pitch, 0.0, 1.0),
            Waypoint(c.right_down, grasp, pitch, 0.0, 1.0),
            Waypoint(c.right_closed, grasp, pitch, 0.0, 0.0),
            Waypoint(c.right_lifted, above, pitch, 0.0, 0.0),
            Waypoint(c.right_at_meet, carry, pitch, 0.0, 0.0),
            Waypoint(c.right_open_from, carry, pitch, 0.0, 0.0),
            Waypoint(c.right_open, carry, pitch, 0.0, 1.0),
            Waypoint(c.right_retreated, retreat, pitch, 0.0, 1.0),
            Waypoint(c.episode_steps, retreat, pitch, 0.0, 1.0),
        ]
        standoff = meet - [c.receive_standoff_m, 0.0, 0.0]
        roll = np.pi / 2  # fingers close vertically: on the cube's top and bottom faces
        left = [
            Waypoint(0, p0l, pitch0l, roll0l, g0l),
            Waypoint(c.left_ready, standoff, 0.0, roll, 1.0),
            Waypoint(c.right_at_meet, standoff, 0.0, roll, 1.0),
            Waypoint(c.left_in, meet, 0.0, roll, 1.0),
            Waypoint(c.left_closed, meet, 0.0, roll, 0.0),
            Waypoint(max(c.right_open, c.left_closed), meet, 0.0, roll, 0.0),
            Waypoint(c.left_away, standoff, 0.0, roll, 0.0),
            Waypoint(c.episode_steps, standoff, 0.0, roll, 0.0),
        ]
        return {"left": left, "right": right}

    def _solve_until(self, k: int) -> None:
        """Solve rows up to and including ``k`` (clipped to the episode)."""
        k = min(int(k), self.config.episode_steps - 1)
        while self._solved <= k:
            row = self._solved
            for a, arm in enumerate(robot.ARMS):
                positions, matrices, grips = self._targets[arm]
                result = self.ik[arm].solve(positions[row], matrices[row], self._q[arm])
                self._q[arm] = result.q
                self._rows[row, _ARM_SLOTS[arm]] = result.q
                self._errors[row, a] = result.position_error
                self._rows[row, robot.GRIPPER_INDICES[a]] = float(np.clip(grips[row], 0.0, 1.0))
            self._solved += 1

    @property
    def trajectory(self) -> np.ndarray:
        """The whole plan [N, 14]: row k is the command of control step k."""
        self._solve_until(self.config.episode_steps - 1)
        return self._rows

    @property
    def ik_errors(self) -> np.ndarray:
        """[N, 2] m, the IK position error of each row, per arm (left, right)."""
        self._solve_until(self.config.episode_steps - 1)
        return self._errors

    def rows(self, k) -> np.ndarray:
        """Rows ``k`` (int or int array, clipped to the episode) -> [..., 14], solving only
        as far as needed."""
        k = np.clip(np.asarray(k, dtype=int), 0, self.config.episode_steps - 1)
        self._solve_until(int(k.max()))
        return self._rows[k].copy()

    def action(self, t: float) -> np.ndarray:
        """Command [14] at time t (s) since the reset (the last row after the end)."""
        return self.rows(int(round(t / self.dt)))
