"""``genpolicy collect``: scripted-expert demonstrations from the sim, as one rosbag2 (MCAP).

One process runs three nodes on one SingleThreadedExecutor, in a ROS domain of its own
choosing (``--domain-id``, default: the environment's)::

    SimNode (genpolicy_sim)  ── joint_states, camera, /clock, ~/episode ──►  recorder
          ▲                                                                  (BagRecorder,
          └── joint_trajectory_controller/joint_trajectory ── ExpertDriver    use_sim_time)
              (or forward_position_controller/commands)

The sim publishes ``/clock`` and runs ``--rate-factor`` times faster than real time; all
stamps (and the recorder's receive times) are simulated time, so the recording is the
same as a real-time one, only sooner. One bag per run (``--out`` must not exist); the
sim stops starting episodes after ``--episodes``, and the run ends once the recorder has
the last ``~/episode`` message. The bag's ``custom_data`` key ``genpolicy_ros.collect``
holds the run's settings as JSON. Convert with :func:`genpolicy_ros.data.bags.bag_to_episodes`
(or ``genpolicy train --bag``).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--episodes", type=int, required=True, metavar="N", help="episodes to record")
    p.add_argument("--out", required=True, metavar="BAGDIR", help="bag directory to create (must not exist)")
    p.add_argument("--images", action="store_true", help="also render and record camera frames")
    p.add_argument("--seed", type=int, default=0, help="episode i uses seed*100003+i; expert modes use --seed")
    p.add_argument("--dt", type=float, default=0.05, metavar="S",
                   help="expert command period = camera period (s, default 0.05)")
    p.add_argument("--episode-s", type=float, default=3.0, metavar="S", help="episode length (sim s, default 3)")
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

    from ..sim.node import ExpertDriver, SimNode
    from .bags import BagRecorder

    _validate(args)
    context = Context()
    rclpy.init(context=context, domain_id=args.domain_id)
    nodes = []
    recorder = None
    executor = None
    try:
        sim = SimNode(context=context, start=False, parameter_overrides=[
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
        driver = ExpertDriver(context=context, seed=int(args.seed), command_rate_hz=1.0 / args.dt,
                              output_mode=args.command)
        nodes.append(driver)
        rec_node = Node("genpolicy_recorder", context=context,
                        parameter_overrides=[Parameter("use_sim_time", value=True)])
        nodes.append(rec_node)
        topics = {"/joint_states": JointState, "/clock": Clock, "/genpolicy_sim/episode": String}
        if args.command == "trajectory":
            topics["/joint_trajectory_controller/joint_trajectory"] = JointTrajectory
        else:
            topics["/forward_position_controller/commands"] = Float64MultiArray
        if args.images:
            topics["/camera/image_raw/compressed"] = CompressedImage
            if args.raw_images:
                topics["/camera/image_raw"] = Image
        recorder = BagRecorder(rec_node, args.out, topics)
        recorder.bag.set_custom_data("genpolicy_ros.collect", json.dumps({
            "episodes": args.episodes, "seed": args.seed, "dt": args.dt, "episode_s": args.episode_s,
            "images": bool(args.images), "command": args.command, "rate_factor": args.rate_factor,
            "joint_names": ["shoulder", "elbow"], "state_names": ["shoulder", "elbow", "target_x", "target_y"],
        }))
        executor = SingleThreadedExecutor(context=context)
        for node in nodes:
            executor.add_node(node)
        _wait_for_connections(executor, rec_node, driver)
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
            now_recorded = recorder.counts.get("/genpolicy_sim/episode", 0)
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
            modes[r["mode"]] = modes.get(r["mode"], 0) + 1
        return {
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


def _wait_for_connections(executor, rec_node, driver, timeout_s: float = 10.0) -> None:
    """Spin until the recorder and the driver see the sim's topics' subscribers (discovery)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
        if (rec_node.count_publishers("/genpolicy_sim/episode") > 0
                and rec_node.count_publishers("/joint_states") > 0
                and driver.count_subscribers("/joint_trajectory_controller/joint_trajectory")
                + driver.count_subscribers("/forward_position_controller/commands") >= 2):
            time.sleep(0.1)  # matched in the graph; give DDS a moment to pair the endpoints
            return
    raise TimeoutError("the sim, expert and recorder did not discover each other within 10 s")


def run(args) -> int:
    try:
        summary = collect(args)
    except (ValueError, TimeoutError) as exc:
        print(f"genpolicy collect: {exc}", file=sys.stderr)
        return 1
    print(f"recorded {summary['episodes']} episodes ({summary['successes']} successful, modes {summary['modes']}) "
          f"in {summary['wall_s']} s -> {summary['bag']}")
    return 0
