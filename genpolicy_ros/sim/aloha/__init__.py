"""ALOHA bimanual transfer-cube (ROS-free): the gym-aloha scene in MuJoCo 4, a scripted IK
expert, the success predicate with per-stage flags, offline demonstrations and roll-outs.

Modules: :mod:`.robot` (joint names, limits, gripper normalisation), :mod:`.assets` (where
the MJCF comes from), :mod:`.env` (the environment), :mod:`.success` (stages from contacts),
:mod:`.kinematics` (damped least-squares IK), :mod:`.expert` (the scripted expert),
:mod:`.offline` (demonstrations and roll-outs), and the command-line tools
``python -m genpolicy_ros.sim.aloha.check_expert`` / ``.collect_offline``.
"""
