"""The bimanual ViperX 300 (ALOHA) as the rest of the project sees it: joint names, limits,
the start pose and the gripper normalisation (ROS-free, no MuJoCo needed).

**Joints** (the JointState contract and the command order), left arm then right arm::

    left_waist, left_shoulder, left_elbow, left_forearm_roll, left_wrist_angle,
    left_wrist_rotate, left_gripper, right_waist, ..., right_gripper

the names of LeRobot's ALOHA data sets (gym-aloha calls them ``left_arm_waist`` ...). The six
arm joints are revolute, in rad, absolute positions. ``*_gripper`` is **normalised**: 0 =
closed, 1 = open, as ALOHA does it (gym-aloha / ACT ``PUPPET_GRIPPER_POSITION_CLOSE`` =
0.01844 m and ``PUPPET_GRIPPER_POSITION_OPEN`` = 0.05800 m of the left finger's slide joint;
the right finger mirrors it)::

    finger_position_m = 0.01844 + g * (0.05800 - 0.01844)        (command g -> both fingers)
    g                 = (finger_position_m - 0.01844) / 0.03956   (published state)

The MJCF limits the finger slide to [0.021, 0.057] m (normalised [0.0647, 0.9747]); the
two finger pads meet at 0.0224 m, so a command of 0 closes an empty gripper to about 0.100
(ALOHA's start pose, 0.02239 m, is that closed gripper); a gripper squeezing the 4 cm cube
reads 0.53-0.70 (0.606 geometrically; soft contacts and how the cube sits), a fully open
one about 0.975. Commands are clipped to [0, 1] before conversion.
"""
from __future__ import annotations

import numpy as np

ARMS = ("left", "right")
ARM_JOINTS = ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate")
# Published/commanded names: 6 arm joints + the normalised gripper, left arm then right.
JOINT_NAMES = tuple(f"{arm}_{j}" for arm in ARMS for j in ARM_JOINTS + ("gripper",))
GRIPPER_INDICES = (6, 13)  # positions of left_gripper / right_gripper in JOINT_NAMES

# MJCF joint names of one arm's joints in the gym-aloha model (vx300s_left.xml / _right.xml).
MJCF_PREFIX = {"left": "vx300s_left/", "right": "vx300s_right/"}
FINGER_JOINTS = ("left_finger", "right_finger")  # slide joints; right_finger = -left_finger

# ALOHA's puppet-gripper finger positions (m) that map to normalised 0 (closed) and 1 (open).
GRIPPER_POSITION_CLOSE = 0.01844
GRIPPER_POSITION_OPEN = 0.05800
FINGER_RANGE = (0.021, 0.057)  # the MJCF's finger slide limits (m)

# Joint limits of one arm (rad), as in the MJCF (also its position actuators' ctrlrange).
_ARM_LOWER = (-3.14158, -1.85005, -1.76278, -3.14158, -1.8675, -3.14158)
_ARM_UPPER = (3.14158, 1.25664, 1.6057, 3.14158, 2.23402, 3.14158)
JOINT_LOWER = np.array(2 * (_ARM_LOWER + (0.0,)))  # [14], grippers normalised
JOINT_UPPER = np.array(2 * (_ARM_UPPER + (1.0,)))  # [14]

# ALOHA's start pose of each arm (gym-aloha/ACT START_ARM_POSE): arm joints, finger at 0.02239 m.
START_ARM = (0.0, -0.96, 1.16, 0.0, -0.3, 0.0)
START_FINGER = 0.02239


def normalize_gripper(finger_position_m):
    """Left-finger slide position (m) -> normalised gripper opening (0 closed, 1 open)."""
    return (np.asarray(finger_position_m, dtype=float) - GRIPPER_POSITION_CLOSE) / (
        GRIPPER_POSITION_OPEN - GRIPPER_POSITION_CLOSE)


def unnormalize_gripper(opening):
    """Normalised gripper opening -> left-finger slide position (m); the inverse of
    :func:`normalize_gripper` (no clipping)."""
    return GRIPPER_POSITION_CLOSE + np.asarray(opening, dtype=float) * (
        GRIPPER_POSITION_OPEN - GRIPPER_POSITION_CLOSE)


def normalize_gripper_velocity(finger_velocity_mps):
    """Finger slide velocity (m/s) -> normalised opening per second."""
    return np.asarray(finger_velocity_mps, dtype=float) / (GRIPPER_POSITION_OPEN - GRIPPER_POSITION_CLOSE)


def start_pose() -> np.ndarray:
    """The 14-dim joint vector of ALOHA's start pose (grippers normalised, ~0.0998)."""
    arm = np.array(START_ARM + (float(normalize_gripper(START_FINGER)),))  # [7]
    return np.concatenate([arm, arm])  # [14]
