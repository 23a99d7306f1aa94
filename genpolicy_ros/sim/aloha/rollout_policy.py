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


class ModelActor:
    """A trained model directory as the chunk policy of :func:`.offline.rollout`: picks the
    model's ``state_names`` from the task's 14 joints + 7 cube-pose values and its cameras'
    frames, samples a chunk, records the seconds each sample took (``sample_s``). ValueError
    when the model observes what the task does not provide or its chunk rows do not fall on
    control steps."""

    def __init__(self, model_dir, steps=None, action_horizon=None):
        import torch

        from ...core.checkpoint import load_model_dir
        from .env import AlohaTaskConfig
        from .offline import STATE_NAMES

        torch.set_num_threads(1)
        self.policy = load_model_dir(model_dir).eval()
        cfg = self.policy.config
        missing = [n for n in cfg.observation.state_names if n not in STATE_NAMES]
        if missing:
            raise ValueError(f"the model observes {missing}, which the task does not provide")
        self.columns = [STATE_NAMES.index(n) for n in cfg.observation.state_names]
        self.cameras = tuple(cfg.observation.camera_names)
        self.task = AlohaTaskConfig(cameras=self.cameras or ("top",), image_size=tuple(cfg.observation.image_size))
        ratio = cfg.horizon.dt / self.task.control_dt
        if abs(ratio - round(ratio)) > 1e-6 or round(ratio) < 1:
            raise ValueError(f"the model's chunk rows are {cfg.horizon.dt} s apart, not a whole number of "
                             f"{self.task.control_dt} s control steps")
        self.rollout_args = {"T_o": cfg.horizon.T_o, "action_horizon": action_horizon or cfg.horizon.T_a,
                             "with_images": bool(self.cameras), "chunk_dt": cfg.horizon.dt}
        self.kwargs = {} if steps is None else {"num_steps": steps}
        self.sample_s: list[float] = []

    def __call__(self, observation: dict, sample_seed: int):
        import numpy as np

        obs = {"state": observation["state"][:, self.columns]}  # [T_o, D_s]
        if self.cameras:
            obs["images"] = {cam: observation["images"][cam].transpose(0, 3, 1, 2).astype(np.float32) / 255.0
                             for cam in self.cameras}  # [T_o, 3, H, W]
        started = time.perf_counter()
        chunk = self.policy.sample_chunk(obs, seed=sample_seed, **self.kwargs)  # [T_p, 14]
        self.sample_s.append(time.perf_counter() - started)
        return chunk

    def run_episode(self, env, episode_seed: int, on_step=None) -> dict:
        """One roll-out in ``env`` reset with ``episode_seed`` -> ``env.evaluate()``; the
        sampler seeds follow from it, so an episode replays exactly."""
        from .offline import rollout

        calls = iter(range(10**6))
        return rollout(lambda o: self(o, episode_seed * 1000 + next(calls)), env, seed=episode_seed,
                       on_step=on_step, **self.rollout_args).evaluation


def evaluate_model(model_dir, episodes: int, seed: int = 1, *, steps=None, action_horizon=None,
                   progress: bool = False) -> tuple[list[dict], list[float]]:
    """Roll ``episodes`` episodes (reset seeds ``seed*100003 + i``) of the model in
    ``model_dir`` -> (``env.evaluate()`` per episode, seconds per sampled chunk)."""
    from ..reach_env import ensure_headless_gl

    ensure_headless_gl()  # image models render; before the first `import mujoco`
    from .env import AlohaTransferCubeEnv
    from .offline import episode_seed

    actor = ModelActor(model_dir, steps=steps, action_horizon=action_horizon)
    env = AlohaTransferCubeEnv(actor.task, render=bool(actor.cameras))
    iterator = range(episodes)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc="rollout", unit="episode")
    try:
        evaluations = [actor.run_episode(env, episode_seed(seed, i)) for i in iterator]
    finally:
        env.close()
    return evaluations, actor.sample_s


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    import numpy as np

    try:
        evaluations, sample_s = evaluate_model(args.model, args.episodes, args.seed, steps=args.steps,
                                               action_horizon=args.T_a, progress=args.progress)
    except ValueError as exc:
        print(f"rollout_policy: {exc}", file=sys.stderr)
        return 1
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
