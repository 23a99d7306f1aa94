"""Closed-loop roll-outs of a trained model directory in the transfer-cube task, ROS-free
(simulated time, no latency; :func:`.offline.rollout`)::

    python -m genpolicy_ros.sim.aloha.rollout_policy --model runs/aloha_flow --episodes 20 --seed 1

The policy samples a chunk from the last ``T_o`` observations (its ``state_names`` picked
by name from the 14 joints + 7 cube-pose values, its cameras rendered at its image size)
and its first ``T_a`` rows are executed at 50 Hz (rows more than 0.02 s apart interpolated
linearly), then the next chunk is sampled. Prints the
success rate, per-stage rates, failure modes and the mean sampling time. Episode i resets
with seed ``seed*100003 + i``: choose a ``--seed`` the demonstrations did not use (they use
0 by default).
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import Counter


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m genpolicy_ros.sim.aloha.rollout_policy",
                                description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, metavar="DIR", help="model directory (genpolicy train --out)")
    p.add_argument("--episodes", type=int, default=20, metavar="N")
    p.add_argument("--seed", type=int, default=1, help="episode i resets with seed*100003+i (default 1)")
    p.add_argument("--steps", type=int, default=None, metavar="K", help="sampler steps (default: the model's)")
    p.add_argument("--T-a", dest="T_a", type=int, default=None, metavar="N", help="rows executed per chunk")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from ..reach_env import ensure_headless_gl

    ensure_headless_gl()  # image models render; before the first `import mujoco`
    import numpy as np
    import torch

    from ...core.checkpoint import load_model_dir
    from .env import AlohaTaskConfig, AlohaTransferCubeEnv
    from .offline import STATE_NAMES, episode_seed, rollout

    torch.set_num_threads(1)
    policy = load_model_dir(args.model).eval()
    cfg = policy.config
    missing = [n for n in cfg.observation.state_names if n not in STATE_NAMES]
    if missing:
        print(f"rollout_policy: the model observes {missing}, which the task does not provide", file=sys.stderr)
        return 1
    columns = [STATE_NAMES.index(n) for n in cfg.observation.state_names]
    task = AlohaTaskConfig(cameras=tuple(cfg.observation.camera_names) or ("top",),
                           image_size=tuple(cfg.observation.image_size))
    ratio = cfg.horizon.dt / task.control_dt
    if abs(ratio - round(ratio)) > 1e-6 or round(ratio) < 1:
        print(f"rollout_policy: the model's chunk rows are {cfg.horizon.dt} s apart, not a whole number of "
              f"{task.control_dt} s control steps", file=sys.stderr)
        return 1
    with_images = bool(cfg.observation.camera_names)
    env = AlohaTransferCubeEnv(task, render=with_images)
    sample_s = []
    kwargs = {} if args.steps is None else {"num_steps": args.steps}

    def act(observation, seed):
        obs = {"state": observation["state"][:, columns]}  # [T_o, D_s]
        if with_images:
            obs["images"] = {cam: observation["images"][cam].transpose(0, 3, 1, 2).astype(np.float32) / 255.0
                             for cam in cfg.observation.camera_names}  # [T_o, 3, H, W]
        started = time.perf_counter()
        chunk = policy.sample_chunk(obs, seed=seed, **kwargs)  # [T_p, 14]
        sample_s.append(time.perf_counter() - started)
        return chunk

    evaluations = []
    iterator = range(args.episodes)
    if args.progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc="rollout", unit="episode")
    try:
        for i in iterator:
            seed = episode_seed(args.seed, i)
            calls = iter(range(10**6))
            result = rollout(lambda o: act(o, seed * 1000 + next(calls)), env, seed=seed, T_o=cfg.horizon.T_o,
                             action_horizon=args.T_a or cfg.horizon.T_a, with_images=with_images,
                             chunk_dt=cfg.horizon.dt)
            evaluations.append(result.evaluation)
    finally:
        env.close()
    n = len(evaluations)
    stages = {s: sum(e["stages"][s] for e in evaluations) for s in ("grasped", "lifted", "transferred")}
    print(f"{args.model}: success {sum(e['success'] for e in evaluations)}/{n}; "
          + ", ".join(f"{k} {v}/{n}" for k, v in stages.items())
          + f"; benchmark (gym-aloha reward 4) {sum(e['benchmark_success'] for e in evaluations)}/{n}")
    print(f"modes: {dict(Counter(e['mode'] for e in evaluations))}; "
          f"sampling {1000 * float(np.mean(sample_s)):.1f} ms per chunk (mean of {len(sample_s)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
