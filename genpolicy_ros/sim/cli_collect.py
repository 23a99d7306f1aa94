"""``genpolicy collect``: scripted-expert demonstrations from the sim, as one rosbag2 (MCAP).

One process runs three nodes on one SingleThreadedExecutor, in a ROS domain of its own
choosing (``--domain-id``, default: the environment's)::

    SimNode (genpolicy_sim)  ── joint_states, inputs, camera, /clock, ~/episode ──►  recorder
          ▲                                                                          (BagRecorder,
          └── joint_trajectory_controller/joint_trajectory ── ExpertDriver            use_sim_time)
              (or forward_position_controller/commands)

``--task`` picks the registered task (default ``reach``; ``genpolicy_ros.tasks``): its
environment, expert, non-joint inputs (recorded on their own topics, e.g. ``/target``) and
cameras.

The sim publishes ``/clock`` and runs ``--rate-factor`` times faster than real time; all
stamps (and the recorder's receive times) are simulated time, so the recording is the
same as a real-time one, only sooner. One bag per run (``--out`` must not exist); the
sim stops starting episodes after ``--episodes``, and the run ends once the recorder has
the last ``~/episode`` message. The bag's ``custom_data`` key ``genpolicy_ros.collect``
holds the run's settings as JSON, with the ``mapping`` of the recording (action joints,
JointState joints, inputs, cameras, dt, joint limits, task) that ``genpolicy train --bag``
uses (:mod:`genpolicy_ros.data.bag_mapping`). Convert with
:func:`genpolicy_ros.data.bags.bag_to_episodes` (or ``genpolicy train --bag``).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..tasks import DEFAULT_TASK, task_names

    p.add_argument("--task", default=DEFAULT_TASK, choices=task_names(),
                   help=f"registered task to demonstrate (default {DEFAULT_TASK})")
    p.add_argument("--episodes", type=int, required=True, metavar="N", help="episodes to record")
    p.add_argument("--out", required=True, metavar="BAGDIR", help="bag directory to create (must not exist)")
    p.add_argument("--images", action="store_true", help="also render and record camera frames")
    p.add_argument("--seed", type=int, default=0, help="episode i uses seed*100003+i; expert modes use --seed")
    p.add_argument("--dt", type=float, default=None, metavar="S",
                   help="expert command period = camera period (s, default: the task's, 0.05 for reach)")
    p.add_argument("--episode-s", type=float, default=None, metavar="S",
                   help="episode length (sim s, default: the task's, 3 for reach)")
    p.add_argument("--rate-factor", type=float, default=4.0, metavar="X",
                   help="simulated seconds per wall second (default 4; the sim slows down if the machine "
                        "can't keep up)")
    p.add_argument("--command", choices=("trajectory", "forward"), default="trajectory",
                   help="expert output: JointTrajectory (stamped with the observation, default) or Float64MultiArray")
    p.add_argument("--raw-images", action="store_true",
                   help="with --images: also record sensor_msgs/Image (default: only the PNG CompressedImage)")
    p.add_argument("--domain-id", type=int, default=None, metavar="ID", help="ROS_DOMAIN_ID for this run")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def _validate(args) -> None:
    from ..tasks import get_task

    task = get_task(args.task)
    args.dt = task.control_dt if args.dt is None else args.dt
    args.episode_s = task.defaults.episode_s if args.episode_s is None else args.episode_s
    if args.episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {args.episodes}")
    if not (args.dt > 0 and args.episode_s >= 2 * args.dt):
        raise ValueError(f"--dt must be > 0 and --episode-s >= 2*dt (got dt={args.dt}, episode-s={args.episode_s})")
    if not (0.01 <= args.rate_factor <= 100):
        raise ValueError(f"--rate-factor must be in [0.01, 100], got {args.rate_factor}")
    if Path(args.out).exists():
        raise ValueError(f"--out {args.out} exists already; choose a new bag directory")


def collect(args) -> dict:
    """Run the collection; returns a summary dict (also printed by :func:`run`)."""
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import CompressedImage, Image, JointState
    from std_msgs.msg import Float64MultiArray, String
    from trajectory_msgs.msg import JointTrajectory

    from ..data.bag_io import BagRecorder
    from ..data.bag_mapping import COLLECT_METADATA_KEY
    from ..ros import topics as T
    from ..ros.input_messages import MESSAGE_TYPES
    from ..tasks import get_task
    from .expert_driver import ExpertDriver
    from .node import SimNode

    _validate(args)
    task = get_task(args.task)
    episode_topic = T.private(T.SIM_NODE, T.EPISODE)
    command_topic = T.absolute(T.TRAJECTORY if args.command == "trajectory" else T.FORWARD)
    context = Context()
    rclpy.init(context=context, domain_id=args.domain_id)
    nodes = []
    recorder = None
    executor = None
    try:
        sim = SimNode(context=context, start=False, parameter_overrides=[
            Parameter("task", value=task.name),
            Parameter("seed", value=int(args.seed)),
            Parameter("episode_s", value=float(args.episode_s)),
            Parameter("camera_rate_hz", value=(1.0 / args.dt) if args.images else 0.0),
            Parameter("compressed_format", value="png"),
            Parameter("publish_clock", value=True),
            Parameter("rate_factor", value=float(args.rate_factor)),
            Parameter("auto_reset", value=True),
            Parameter("max_episodes", value=int(args.episodes)),
        ])
        nodes.append(sim)
        # The expert's plan 0.5 s ahead in every trajectory: on a busy machine a message that
        # arrives late still holds the rows due now (the sim samples them on its own clock).
        driver = ExpertDriver(context=context, task=task.name, seed=int(args.seed), command_rate_hz=1.0 / args.dt,
                              output_mode=args.command, horizon=max(4, int(math.ceil(0.5 / args.dt))))
        nodes.append(driver)
        rec_node = Node("genpolicy_recorder", context=context,
                        parameter_overrides=[Parameter("use_sim_time", value=True)])
        nodes.append(rec_node)
        topics = {T.absolute(T.JOINT_STATES): JointState, T.CLOCK: Clock, episode_topic: String,
                  command_topic: JointTrajectory if args.command == "trajectory" else Float64MultiArray}
        topics.update({T.absolute(T.input_topic(i.name)): MESSAGE_TYPES[i.type] for i in task.state_inputs})
        cameras = {}
        if args.images:
            for camera, (raw, compressed) in T.camera_topics(task.camera_names).items():
                topics[T.absolute(compressed)] = CompressedImage
                cameras[camera] = T.absolute(compressed)
                if args.raw_images:
                    topics[T.absolute(raw)] = Image
                    cameras[camera] = T.absolute(raw)
        recorder = BagRecorder(rec_node, args.out, topics)
        recorder.bag.set_custom_data(COLLECT_METADATA_KEY, json.dumps({
            "task": task.name, "episodes": args.episodes, "seed": args.seed, "dt": args.dt,
            "episode_s": args.episode_s, "images": bool(args.images), "command": args.command,
            "rate_factor": args.rate_factor,
            "mapping": {"action_joints": list(task.action_names), "joint_state_names": list(task.joint_names),
                        "state_inputs": task.state_inputs_config(), "cameras": cameras, "dt": args.dt,
                        "joint_limits": [list(task.lower_limits), list(task.upper_limits)],
                        "units": dict(task.units), "task": task.name},
        }))
        executor = SingleThreadedExecutor(context=context)
        for node in nodes:
            executor.add_node(node)
        _wait_for_connections(executor, rec_node, driver, episode_topic,
                              [T.absolute(T.input_topic(i.name)) for i in task.state_inputs])
        sim.start()

        progress = None
        if args.progress:
            from tqdm import tqdm

            progress = tqdm(total=args.episodes, desc="collect", unit="episode")
        budget_s = 30.0 + 5.0 * args.episodes * args.episode_s / args.rate_factor
        t0 = time.monotonic()
        recorded = 0
        while recorded < args.episodes:
            executor.spin_once(timeout_sec=0.05)
            now_recorded = recorder.counts.get(episode_topic, 0)
            if progress is not None and now_recorded > recorded:
                progress.update(now_recorded - recorded)
                ok = sum(r["success"] for r in sim.results)
                progress.set_postfix(success=f"{ok}/{len(sim.results)}")
            recorded = now_recorded
            if time.monotonic() - t0 > budget_s:
                raise TimeoutError(f"only {recorded} of {args.episodes} episodes recorded after {budget_s:.0f} s")
        if progress is not None:
            progress.close()
        sim.stop()
        end = time.monotonic() + 0.2  # let the last commands and frames reach the recorder
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.02)
        recorder.close()
        results = sim.results[: args.episodes]
        modes = {}
        for r in results:
            modes[r.get("mode", "n/a")] = modes.get(r.get("mode", "n/a"), 0) + 1
        return {
            "task": task.name,
            "bag": str(Path(args.out).resolve()),
            "episodes": len(results),
            "successes": sum(r["success"] for r in results),
            "modes": modes,
            "messages": recorder.counts,
            "wall_s": round(time.monotonic() - t0, 2),
            "sim_stats": dict(sim.stats),
        }
    finally:
        if recorder is not None:
            recorder.close()
        if executor is not None:
            executor.shutdown()
        for node in reversed(nodes):
            node.destroy_node()
        rclpy.try_shutdown(context=context)


def _wait_for_connections(executor, rec_node, driver, episode_topic: str, input_topics=(),
                          timeout_s: float = 10.0) -> None:
    """Spin until the recorder and the driver see the sim's publishers (joint states, every
    non-joint input, the episode topic) and the sim the driver's commands (discovery): an
    episode whose first observations reach nobody would start the expert late."""
    from ..ros import topics as T

    observed = [T.absolute(T.JOINT_STATES), *input_topics]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
        if (rec_node.count_publishers(episode_topic) > 0
                and all(rec_node.count_publishers(t) > 0 and driver.count_publishers(t) > 0 for t in observed)
                and driver.count_subscribers(T.absolute(T.TRAJECTORY))
                + driver.count_subscribers(T.absolute(T.FORWARD)) >= 2):
            time.sleep(0.1)  # matched in the graph; give DDS a moment to pair the endpoints
            return
    raise TimeoutError("the sim, expert and recorder did not discover each other within 10 s")


def run(args) -> int:
    try:
        summary = collect(args)
    except (ValueError, TimeoutError) as exc:
        print(f"genpolicy collect: {exc}", file=sys.stderr)
        return 1
    print(f"recorded {summary['episodes']} {summary['task']} episodes ({summary['successes']} successful, "
          f"modes {summary['modes']}) "
          f"in {summary['wall_s']} s -> {summary['bag']}")
    return 0
