"""``genpolicy node`` / ``ros2 run genpolicy_ros policy_node``: run the policy lifecycle node.

    genpolicy node [--autostart] [--ros-args -p model_path:=/path/to/model ...]

Everything after ``--ros-args`` is handed to rcl unchanged (remaps, ``-p``,
``--params-file``, ``--log-level``; several ``--ros-args`` blocks, as launch_ros passes
them, are fine). The node starts *unconfigured*, as a managed node should; with
``--autostart`` (or the parameter ``autostart:=true``) ``main`` configures and then
activates it itself. ``launch/policy.launch.py`` does the same with lifecycle events.
A failed configure is logged and leaves the node alive and unconfigured.

The node spins in rclpy's single-threaded executor; the command loop has its own thread
and generation its own process. rclpy's ``MultiThreadedExecutor`` is *not* used: with this
node's callback groups it busy-polls its wait set, and measured in a process of its own at
100 Hz (rclpy 9.1.2, 2 cores) it took 99 % of a core and the commands left at 11 Hz with
2-second gaps, where the single-threaded executor took 15 % and kept 100.0 Hz
(`genpolicy bench MODEL --ros-seconds N` measures the command stream). Ctrl-C
and an external shutdown end it cleanly: executor stopped, generation child closed.
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--autostart", action="store_true",
                        help="configure and activate the node at start (default: stay unconfigured)")
    parser.add_argument("--executor", choices=("single", "events"), default="single",
                        help="rclpy executor: single (SingleThreadedExecutor, default) or events (rclpy's "
                             "experimental EventsExecutor; for measurements, see docs/ros.md)")
    parser.add_argument("--ros-args", dest="ros_args", nargs=argparse.REMAINDER, default=None,
                        metavar="ROS_ARGS", help="ROS arguments (remaps, -p name:=value, --params-file ...)")


def _autostart(node) -> None:
    from rclpy.lifecycle import TransitionCallbackReturn

    log = node.get_logger()
    if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
        log.error("autostart: configure failed; the node stays unconfigured (fix the parameters and "
                  "configure it again, e.g. `ros2 lifecycle set /genpolicy configure`)")
        return
    if node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
        log.error("autostart: activate failed; the node stays inactive")


def run(args: argparse.Namespace) -> int:
    """Spin the node until Ctrl-C or an external shutdown; returns the exit status."""
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    from .policy_node import PolicyNode
    from .spin import spin_until_shutdown

    ros_args = ["--ros-args", *args.ros_args] if args.ros_args is not None else []
    rclpy.init(args=["genpolicy", *ros_args])
    node = None
    status = 0
    try:
        node = PolicyNode()
        if getattr(args, "executor", "single") == "events":
            from rclpy.experimental import EventsExecutor

            executor = EventsExecutor()
        else:
            executor = SingleThreadedExecutor()
        if args.autostart or node.get_parameter("autostart").value:
            _autostart(node)
        executor.add_node(node)
        spin_until_shutdown(executor)
    except (KeyboardInterrupt, ExternalShutdownException):  # during set-up
        pass
    except Exception as exc:  # noqa: BLE001 - report, then clean up below
        print(f"genpolicy node: {type(exc).__name__}: {exc}", file=sys.stderr)
        status = 1
    finally:
        if node is not None:
            try:
                node.destroy_node()  # stops the executor thread and the generation child
            except Exception:  # noqa: BLE001 - the context may already be shut down
                pass
        rclpy.try_shutdown()
    return status


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``genpolicy node`` as a stand-alone entry point (``argv`` without the program name)."""
    parser = argparse.ArgumentParser(prog="genpolicy node", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
