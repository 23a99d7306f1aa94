"""Inverse kinematics of one ViperX arm's tool centre point: damped least squares on
MuJoCo's site Jacobian (``mj_jacSite``), on a private ``MjData`` (kinematics only, the
simulation's own data is never touched).

One Newton-like iteration: with the pose error ``e = [p* - p; log(R* R^T)]`` (6, world
frame) and the Jacobian ``J`` (6 x 6, the arm's columns), ``dq = J^T (J J^T + λ² I)^-1 e``,
its largest entry capped at ``max_step_rad``, joints clipped to their limits. Warm-started
from the previous solution, a smooth Cartesian path gives a smooth joint path.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import robot
from .assets import TCP_SITES


def rotation_error(target: np.ndarray, current: np.ndarray) -> np.ndarray:
    """Rotation vector [3] (world frame) that turns ``current`` [3, 3] into ``target`` [3, 3]."""
    from scipy.spatial.transform import Rotation

    return Rotation.from_matrix(target @ current.T).as_rotvec()


@dataclass
class IKResult:
    q: np.ndarray  # [6] arm joint positions (rad)
    position_error: float  # m
    rotation_error: float  # rad
    iterations: int

    @property
    def converged(self) -> bool:
        return self.position_error < 1e-3 and self.rotation_error < 1e-2


class ArmIK:
    """IK of ``arm`` ("left" / "right") for a compiled ALOHA model (:func:`.assets.build_model`)."""

    def __init__(self, model, arm: str, damping: float = 0.02, max_step_rad: float = 0.2,
                 tolerance_m: float = 1e-4, tolerance_rad: float = 1e-3, max_iterations: int = 100):
        import mujoco

        if arm not in robot.ARMS:
            raise ValueError(f"arm must be one of {robot.ARMS}, got {arm!r}")
        self._mj = mujoco
        self.model = model
        self.data = mujoco.MjData(model)
        self.site = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, TCP_SITES[arm])
        if self.site < 0:
            raise ValueError(f"model has no site {TCP_SITES[arm]!r} (build it with assets.build_model)")
        joints = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, robot.MJCF_PREFIX[arm] + j)
                  for j in robot.ARM_JOINTS]
        self.qadr = np.array([model.jnt_qposadr[j] for j in joints])  # [6]
        self.dadr = np.array([model.jnt_dofadr[j] for j in joints])  # [6]
        slots = slice(0, 6) if arm == "left" else slice(7, 13)
        self.lower = robot.JOINT_LOWER[slots]  # [6]
        self.upper = robot.JOINT_UPPER[slots]  # [6]
        self.damping = damping
        self.max_step_rad = max_step_rad
        self.tolerance_m = tolerance_m
        self.tolerance_rad = tolerance_rad
        self.max_iterations = max_iterations
        base = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, robot.MJCF_PREFIX[arm].rstrip("/"))
        mujoco.mj_kinematics(model, self.data)
        self.base_xy = self.data.xpos[base, :2].copy()  # [2] the arm's base (waist axis) on the table
        self._jacp = np.zeros((3, model.nv))
        self._jacr = np.zeros((3, model.nv))

    def forward(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """TCP position [3] and rotation [3, 3] for arm joints q [6] (the other arm at zero)."""
        self.data.qpos[self.qadr] = q
        self._mj.mj_kinematics(self.model, self.data)
        return self.data.site_xpos[self.site].copy(), self.data.site_xmat[self.site].reshape(3, 3).copy()

    def solve(self, position: np.ndarray, rotation: np.ndarray, q_init: np.ndarray) -> IKResult:
        mj = self._mj
        q = np.clip(np.asarray(q_init, dtype=float), self.lower, self.upper)  # [6]
        lam2 = self.damping ** 2
        pos_err = rot_err = np.inf
        iteration = 0
        for iteration in range(1, self.max_iterations + 1):
            p, R = self.forward(q)
            e = np.concatenate([position - p, rotation_error(rotation, R)])  # [6]
            pos_err, rot_err = float(np.linalg.norm(e[:3])), float(np.linalg.norm(e[3:]))
            if pos_err < self.tolerance_m and rot_err < self.tolerance_rad:
                break
            mj.mj_comPos(self.model, self.data)
            mj.mj_jacSite(self.model, self.data, self._jacp, self._jacr, self.site)
            J = np.vstack([self._jacp[:, self.dadr], self._jacr[:, self.dadr]])  # [6, 6]
            dq = J.T @ np.linalg.solve(J @ J.T + lam2 * np.eye(6), e)  # [6]
            biggest = np.abs(dq).max()
            if biggest > self.max_step_rad:
                dq *= self.max_step_rad / biggest
            q = np.clip(q + dq, self.lower, self.upper)
        return IKResult(q=q, position_error=pos_err, rotation_error=rot_err, iterations=iteration)
