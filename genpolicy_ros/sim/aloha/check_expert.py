"""Measure the scripted transfer-cube expert over many random cube placements (ROS-free)::

    python -m genpolicy_ros.sim.aloha.check_expert --episodes 100

Prints the success rate, the per-stage rates, the failure modes, the benchmark's own score
(gym-aloha reward 4 at some step), and the largest commanded joint velocity and
acceleration per joint (finite differences of the 50 Hz command rows; grippers in
normalised opening per s), which the policy node's ``max_joint_velocity`` /
``max_joint_acceleration`` must admit. ``--picture PNG`` saves a strip of frames of the
first episode.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m genpolicy_ros.sim.aloha.check_expert",
                                description=__doc__.split("\n")[0])
    p.add_argument("--episodes", type=int, default=100, metavar="N", help="episodes (default 100)")
    p.add_argument("--seed", type=int, default=0, help="episode i resets with seed*100003+i (default 0)")
    p.add_argument("--picture", metavar="PNG", help="save frames of the first episode (camera 'angle')")
    p.add_argument("--json", metavar="FILE", help="also write the summary as JSON")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return p


def summarize(evaluations: list[dict], velocities, accelerations, joint_names) -> dict:
    import numpy as np

    n = len(evaluations)
    stage_names = ("grasped", "lifted", "transferred")
    return {
        "episodes": n,
        "success": sum(e["success"] for e in evaluations),
        "stages": {s: sum(e["stages"][s] for e in evaluations) for s in stage_names},
        "benchmark_success": sum(e["benchmark_success"] for e in evaluations),
        "modes": dict(Counter(e["mode"] for e in evaluations)),
        "arm_collisions": sum(e["arm_collision"] for e in evaluations),
        "episodes_with_arm_table_contact": sum(e["table_contact_steps"] > 0 for e in evaluations),
        "max_abs_velocity": dict(zip(joint_names, np.max(velocities, axis=0).round(3).tolist())),
        "max_abs_acceleration": dict(zip(joint_names, np.max(accelerations, axis=0).round(2).tolist())),
    }


def save_picture(path: str, seed: int) -> None:
    import matplotlib.pyplot as plt
    import numpy as np

    from .env import AlohaTaskConfig, AlohaTransferCubeEnv
    from .expert import TransferCubeExpert

    env = AlohaTransferCubeEnv(AlohaTaskConfig(cameras=("angle",), image_size=(240, 320)), render=True)
    try:
        obs = env.reset(seed=seed)
        expert = TransferCubeExpert.for_env(env)
        frames = []  # [H, W, 3] every second, then the end
        for k in range(env.config.episode_steps):
            if k % 50 == 0:
                frames.append(env.render("angle"))
            obs = env.step(expert.action(obs.time_s + env.control_dt), env.control_dt, with_image=False)
        frames.append(env.render("angle"))
    finally:
        env.close()
    frames += [np.zeros_like(frames[0])] * (-len(frames) % 5)
    rows = [np.concatenate(frames[i:i + 5], axis=1) for i in range(0, len(frames), 5)]
    plt.imsave(path, np.concatenate(rows, axis=0))


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.episodes < 1:
        print("check_expert: --episodes must be >= 1", file=sys.stderr)
        return 2
    if args.picture:
        from ..reach_env import ensure_headless_gl

        ensure_headless_gl()  # before the first `import mujoco`
    import numpy as np

    from .assets import AlohaAssetsMissing
    from .env import AlohaTransferCubeEnv
    from .offline import episode_seed, run_expert_episode
    from .robot import JOINT_NAMES

    try:
        env = AlohaTransferCubeEnv()
    except AlohaAssetsMissing as exc:
        print(f"check_expert: {exc}", file=sys.stderr)
        return 1
    evaluations, velocities, accelerations = [], [], []
    iterator = range(args.episodes)
    if args.progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc="expert", unit="episode")
    started = time.perf_counter()
    for i in iterator:
        record = run_expert_episode(env, episode_seed(args.seed, i))
        dt = env.control_dt
        velocity = np.diff(record.commands, axis=0) / dt  # [N-1, 14]
        evaluations.append(record.evaluation)
        velocities.append(np.abs(velocity).max(axis=0))
        accelerations.append(np.abs(np.diff(velocity, axis=0) / dt).max(axis=0))
    wall = time.perf_counter() - started
    env.close()
    summary = summarize(evaluations, velocities, accelerations, JOINT_NAMES)
    summary["wall_s_per_episode"] = round(wall / args.episodes, 3)
    n = summary["episodes"]
    print(f"success {summary['success']}/{n} ({100 * summary['success'] / n:.1f} %); stages: "
          + ", ".join(f"{k} {v}/{n}" for k, v in summary["stages"].items())
          + f"; benchmark (gym-aloha reward 4) {summary['benchmark_success']}/{n}")
    print(f"modes: {summary['modes']}; arm collisions {summary['arm_collisions']}; "
          f"episodes with an arm touching the table {summary['episodes_with_arm_table_contact']}")
    print("max |commanded velocity| (rad/s; grippers opening/s) and |acceleration| (/s^2):")
    for name in JOINT_NAMES:
        print(f"  {name:20s} {summary['max_abs_velocity'][name]:7.3f} {summary['max_abs_acceleration'][name]:8.2f}")
    print(f"wall time {summary['wall_s_per_episode']} s per episode (planning + physics, no rendering)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(summary, fh, indent=2)
    if args.picture:
        save_picture(args.picture, episode_seed(args.seed, 0))
        print(f"wrote {args.picture}")
    return 0 if summary["success"] == n else 3


if __name__ == "__main__":
    sys.exit(main())
