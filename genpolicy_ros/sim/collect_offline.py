"""Expert demonstrations straight from the MuJoCo task (no ROS), as an episode data set.

``genpolicy collect`` records the expert over the real topics into a rosbag2; this is the
ROS-free path for data that the sim node cannot yet produce: the obstacle variant with
*paired* demonstrations (each start shown elbow-up and elbow-down; the sim node and the
expert driver pick starts and modes independently). Same env, expert and episode format
(:func:`genpolicy_ros.sim.offline.collect_expert_episodes`)::

    python -m genpolicy_ros.sim.collect_offline --obstacle --paired --episodes 200 --out data/obstacle
    genpolicy train --data data/obstacle --config config/models/obstacle_flow.yaml --out runs/obstacle_flow
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m genpolicy_ros.sim.collect_offline", description=__doc__.split("\n")[0])
    p.add_argument("--episodes", type=int, required=True, metavar="N", help="episodes to record (even with --paired)")
    p.add_argument("--out", required=True, metavar="DIR", help="episode data set directory to create (must not exist)")
    p.add_argument("--obstacle", action="store_true", help="the obstacle variant (reach_env.obstacle_task)")
    p.add_argument("--paired", action="store_true", help="each start twice, once per mode")
    p.add_argument("--images", action="store_true", help="also render the overhead camera")
    p.add_argument("--seed", type=int, default=0, help="episode seeds and expert modes (default 0)")
    p.add_argument("--dt", type=float, default=0.05, metavar="S", help="sample period (s, default 0.05)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.episodes < 1 or (args.paired and args.episodes % 2):
        print("collect_offline: --episodes must be >= 1 (and even with --paired)", file=sys.stderr)
        return 2
    if not args.dt > 0:
        print("collect_offline: --dt must be > 0", file=sys.stderr)
        return 2
    out = Path(args.out)
    if out.exists():
        print(f"collect_offline: {out} exists; choose a new directory", file=sys.stderr)
        return 1
    if args.images:
        from .reach_env import ensure_headless_gl

        ensure_headless_gl()
    from .offline import collect_expert_episodes
    from .reach_env import ReachTaskConfig, obstacle_task

    task = obstacle_task() if args.obstacle else ReachTaskConfig()
    dataset = collect_expert_episodes(out, args.episodes, seed=args.seed, dt=args.dt, with_images=args.images,
                                      task=task, progress=args.progress, paired_modes=args.paired)
    print(f"wrote {len(dataset)} episodes to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
