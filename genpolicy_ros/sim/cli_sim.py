"""``genpolicy sim``: run the MuJoCo reaching sim as a ROS 2 node until Ctrl-C.

Options map onto the node's parameters (see :mod:`genpolicy_ros.sim.node`); anything after
``--ros-args`` goes to rclpy (remappings, ``-p name:=value``, ``--params-file``), and a
``-p`` there overrides the option. Example::

    genpolicy sim --publish-clock --rate-factor 2 --camera-rate-hz 20
"""
from __future__ import annotations

import argparse
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0, help="episode i uses seed*100003+i")
    p.add_argument("--episode-s", type=float, default=3.0, metavar="S", help="episode length (sim seconds)")
    p.add_argument("--physics-rate-hz", type=float, default=100.0, metavar="HZ",
                   help="loop and joint_states rate in simulated time (default 100)")
    p.add_argument("--camera-rate-hz", type=float, default=10.0, metavar="HZ", help="0 = no camera (default 10)")
    p.add_argument("--image-size", type=int, nargs=2, default=(96, 96), metavar=("H", "W"))
    p.add_argument("--compressed-format", choices=("jpeg", "png"), default="jpeg")
    p.add_argument("--publish-clock", action="store_true", help="publish /clock and stamp with simulated time")
    p.add_argument("--rate-factor", type=float, default=1.0, metavar="X", help="simulated s per wall s")
    p.add_argument("--no-auto-reset", dest="auto_reset", action="store_false",
                   help="hold at the end of an episode until ~/reset is called")
    p.add_argument("--max-episodes", type=int, default=0, metavar="N", help="0 = unlimited")
    p.add_argument("--ros-args", dest="ros_args", nargs=argparse.REMAINDER, default=[],
                   help="arguments for rclpy (everything after --ros-args)")


def run(args) -> int:
    import rclpy
    from rclpy.exceptions import ParameterException
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter

    from ..ros.spin import spin_until_shutdown
    from .node import SimNode

    overrides = [
        Parameter("seed", value=int(args.seed)),
        Parameter("episode_s", value=float(args.episode_s)),
        Parameter("physics_rate_hz", value=float(args.physics_rate_hz)),
        Parameter("camera_rate_hz", value=float(args.camera_rate_hz)),
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
            f"reach sim: {p.physics_rate_hz:g} Hz physics, camera {p.camera_rate_hz:g} Hz, episode {p.episode_s:g} s, "
            f"rate x{p.rate_factor:g}, clock {'on' if p.publish_clock else 'off'}")
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
