"""``genpolicy sim``: run a registered task's MuJoCo sim as a ROS 2 node until Ctrl-C.

Options map onto the node's parameters (see :mod:`genpolicy_ros.sim.node`); anything after
``--ros-args`` goes to rclpy (remappings, ``-p name:=value``, ``--params-file``), and a
``-p`` there overrides the option. Example::

    genpolicy sim --publish-clock --rate-factor 2 --camera-rate-hz 20
    genpolicy sim --task reach_obstacle
"""
from __future__ import annotations

import argparse
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..tasks import DEFAULT_TASK, task_names

    p.add_argument("--task", default=DEFAULT_TASK, choices=task_names(),
                   help=f"registered task to simulate (default {DEFAULT_TASK})")
    p.add_argument("--seed", type=int, default=0, help="episode i uses seed*100003+i")
    p.add_argument("--episode-s", type=float, default=0.0, metavar="S",
                   help="episode length (sim seconds; default 0 = the task's, 3 s for reach)")
    p.add_argument("--physics-rate-hz", type=float, default=0.0, metavar="HZ",
                   help="loop and joint_states rate in simulated time (default 0 = the task's: reach 100, "
                        "aloha_transfer_cube 50)")
    p.add_argument("--camera-rate-hz", type=float, default=None, metavar="HZ",
                   help="0 = no camera (default: the task's, reach 10, aloha_transfer_cube 50)")
    p.add_argument("--image-size", type=int, nargs=2, default=(0, 0), metavar=("H", "W"),
                   help="camera frame size (default 0 0 = each camera's own, 64x64 for reach: what its image "
                        "model takes)")
    p.add_argument("--compressed-format", choices=("jpeg", "png"), default="jpeg")
    p.add_argument("--publish-clock", action="store_true", help="publish /clock and stamp with simulated time")
    p.add_argument("--rate-factor", type=float, default=1.0, metavar="X", help="simulated s per wall s")
    p.add_argument("--no-auto-reset", dest="auto_reset", action="store_false",
                   help="hold at the end of an episode until ~/reset is called")
    p.add_argument("--max-episodes", type=int, default=0, metavar="N", help="0 = unlimited")
    p.add_argument("--no-legacy-target-joints", dest="legacy_target_joints", action="store_false",
                   help="publish the non-joint inputs (e.g. target) only on their topics, not also as JointState "
                        "entries")
    p.add_argument("--ros-args", dest="ros_args", nargs=argparse.REMAINDER, default=[],
                   help="arguments for rclpy (everything after --ros-args)")


def run(args) -> int:
    import rclpy
    from rclpy.exceptions import ParameterException
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter

    from ..ros.spin import spin_until_shutdown
    from ..tasks import get_task
    from .node import SimNode

    camera_rate = get_task(args.task).defaults.camera_rate_hz if args.camera_rate_hz is None else args.camera_rate_hz
    overrides = [
        Parameter("task", value=args.task),
        Parameter("legacy_target_joints", value=bool(args.legacy_target_joints)),
        Parameter("seed", value=int(args.seed)),
        Parameter("episode_s", value=float(args.episode_s)),
        Parameter("physics_rate_hz", value=float(args.physics_rate_hz)),
        Parameter("camera_rate_hz", value=float(camera_rate)),
        Parameter("image_height", value=int(args.image_size[0])),
        Parameter("image_width", value=int(args.image_size[1])),
        Parameter("compressed_format", value=args.compressed_format),
        Parameter("publish_clock", value=bool(args.publish_clock)),
        Parameter("rate_factor", value=float(args.rate_factor)),
        Parameter("auto_reset", value=bool(args.auto_reset)),
        Parameter("max_episodes", value=int(args.max_episodes)),
    ]
    rclpy.init(args=["genpolicy_sim", "--ros-args", *args.ros_args] if args.ros_args else None)
    node = None
    try:
        # parameter_overrides lose against --ros-args -p: drop the ones given there.
        given = {a.split(":=", 1)[0] for a in args.ros_args if ":=" in a}
        node = SimNode(parameter_overrides=[o for o in overrides if o.name not in given])
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        p = node.params
        node.get_logger().info(
            f"{node.task.name} sim: {p.physics_rate_hz:g} Hz physics, camera {p.camera_rate_hz:g} Hz, episode "
            f"{p.episode_length_s:g} s, rate x{p.rate_factor:g}, clock {'on' if p.publish_clock else 'off'}")
        spin_until_shutdown(executor)
    except (ValueError, ParameterException) as exc:
        print(f"genpolicy sim: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # during set-up
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
