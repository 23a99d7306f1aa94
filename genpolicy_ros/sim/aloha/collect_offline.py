"""Scripted transfer-cube demonstrations straight from MuJoCo (no ROS), as an episode data set::

    python -m genpolicy_ros.sim.aloha.collect_offline --episodes 50 --out data/aloha
    python -m genpolicy_ros.sim.aloha.collect_offline --episodes 50 --out data/aloha_img --images
    genpolicy train --data data/aloha --kind flow --out runs/aloha_flow

State names: the 14 joints (grippers normalised) and ``cube_x … cube_qz``; actions: the 14
commanded joints; ``--images`` adds the ``top`` camera (``--image-size H W``, default
120 160). Episode i resets with seed ``seed*100003 + i``; failed demonstrations are left
out (``--keep-failures`` keeps them).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m genpolicy_ros.sim.aloha.collect_offline",
                                description=__doc__.split("\n")[0])
    p.add_argument("--episodes", type=int, required=True, metavar="N", help="episodes to record")
    p.add_argument("--out", required=True, metavar="DIR", help="episode data set directory to create (must not exist)")
    p.add_argument("--images", action="store_true", help="also record the cameras (default: top)")
    p.add_argument("--cameras", nargs="+", default=["top"], metavar="CAM", help="cameras with --images (default top)")
    p.add_argument("--image-size", type=int, nargs=2, default=(120, 160), metavar=("H", "W"))
    p.add_argument("--seed", type=int, default=0, help="episode i resets with seed*100003+i (default 0)")
    p.add_argument("--noise-rad", type=float, default=0.0, metavar="STD",
                   help="DART noise: executed arm commands = plan + an OU process of this std (rad); the data "
                        "records the plan (default 0)")
    p.add_argument("--noise-tau", type=float, default=0.3, metavar="S", help="correlation time of that noise (s)")
    p.add_argument("--keep-failures", action="store_true", help="also write failed demonstrations")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.episodes < 1:
        print("collect_offline: --episodes must be >= 1", file=sys.stderr)
        return 2
    out = Path(args.out)
    if out.exists():
        print(f"collect_offline: {out} exists; choose a new directory", file=sys.stderr)
        return 1
    if args.images:
        from ..reach_env import ensure_headless_gl

        ensure_headless_gl()  # before the first `import mujoco`
    from .assets import AlohaAssetsMissing
    from .env import AlohaTaskConfig
    from .offline import CommandNoise, collect_expert_episodes

    try:
        task = AlohaTaskConfig(cameras=tuple(args.cameras), image_size=tuple(args.image_size))
        noise = CommandNoise(args.noise_rad, args.noise_tau)
    except ValueError as exc:
        print(f"collect_offline: {exc}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    try:
        dataset, evaluations = collect_expert_episodes(out, args.episodes, seed=args.seed, with_images=args.images,
                                                       task=task, progress=args.progress,
                                                       keep_failures=args.keep_failures, noise=noise)
    except AlohaAssetsMissing as exc:
        print(f"collect_offline: {exc}", file=sys.stderr)
        return 1
    wall = time.perf_counter() - started
    successes = sum(e["success"] for e in evaluations)
    print(f"wrote {len(dataset)} episodes to {out} ({successes}/{len(evaluations)} expert episodes succeeded; "
          f"{wall / args.episodes:.2f} s per episode)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
