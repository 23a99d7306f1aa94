"""One transfer-cube episode of a trained model as an animated GIF (ROS-free roll-out,
simulated time; the same episode as ``rollout_policy`` / ``success_curve`` with that seed)::

    python -m genpolicy_ros.sim.aloha.episode_gif --model models/aloha_state_flow --seed 2 --out episode.gif

Episode ``--index`` i resets with seed ``seed*100003 + i``. Frames come from ``--camera``
(default ``angle``, the ALOHA scene's oblique view; any of the scene's cameras) every
``--every`` control steps (default 4: 12.5 frames per simulated second, played in real time).
Prints the outcome (success or the failure mode, stages) so the caption can say which.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def record_episode(model_dir, episode_seed: int, *, camera: str = "angle", size=(240, 320), every: int = 4):
    """Roll one episode of ``model_dir`` reset with ``episode_seed`` -> (frames [N, H, W, 3]
    uint8 from ``camera``: after the first control step, every ``every``-th and the last;
    ``env.evaluate()``)."""
    from ..reach_env import ensure_headless_gl

    ensure_headless_gl()  # before the first `import mujoco`
    import numpy as np

    from .env import AlohaTaskConfig, AlohaTransferCubeEnv
    from .rollout_policy import ModelActor

    if every < 1:
        raise ValueError(f"every must be >= 1 control step, got {every}")
    actor = ModelActor(model_dir)
    # An image model's own cameras stay at its size (its observations); a state model's env
    # renders only the GIF's camera.
    task = AlohaTaskConfig(cameras=actor.cameras or (camera,),
                           image_size=actor.task.image_size if actor.cameras else tuple(size))
    env = AlohaTransferCubeEnv(task, render=True)
    frames = []
    try:
        last = env.config.episode_steps - 1

        def grab(k: int) -> None:  # after control step k (the first: 0.02 s into the episode)
            if k == 0 or k % every == every - 1 or k == last:
                frames.append(env.render(camera))  # [H, W, 3]

        evaluation = actor.run_episode(env, episode_seed, on_step=grab)
    finally:
        env.close()
    return np.stack(frames), evaluation  # [N, H, W, 3]


def write_gif(frames, path, frame_s: float, hold_last_s: float = 1.0) -> Path:
    """Write frames [N, H, W, 3] uint8 as a looping GIF, ``frame_s`` per frame, the last held
    ``hold_last_s`` longer."""
    import imageio.v3 as iio

    if len(frames) < 1 or frame_s <= 0:
        raise ValueError("write_gif: need at least one frame and frame_s > 0")
    durations = [int(round(1000 * frame_s))] * len(frames)
    durations[-1] += int(round(1000 * hold_last_s))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(out, list(frames), extension=".gif", duration=durations, loop=0)
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m genpolicy_ros.sim.aloha.episode_gif",
                                description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, metavar="DIR", help="model directory")
    p.add_argument("--out", required=True, metavar="GIF", help="GIF file to write")
    p.add_argument("--seed", type=int, default=2, help="episode i resets with seed*100003+i (default 2)")
    p.add_argument("--index", type=int, default=0, metavar="I", help="episode index i (default 0)")
    p.add_argument("--camera", default="angle", help="scene camera to film (default angle)")
    p.add_argument("--size", type=int, nargs=2, default=(240, 320), metavar=("H", "W"),
                   help="frame size of a state model's GIF (default 240 320)")
    p.add_argument("--every", type=int, default=4, metavar="K", help="one frame every K control steps (default 4)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from .env import CAMERAS
    from .offline import episode_seed

    if args.camera not in CAMERAS:
        print(f"episode_gif: --camera must be one of {CAMERAS}, got {args.camera!r}", file=sys.stderr)
        return 2
    seed = episode_seed(args.seed, args.index)
    try:
        frames, evaluation = record_episode(args.model, seed, camera=args.camera, size=args.size, every=args.every)
    except ValueError as exc:
        print(f"episode_gif: {exc}", file=sys.stderr)
        return 1
    out = write_gif(frames, args.out, frame_s=args.every * 0.02)
    stages = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in evaluation["stages"].items())
    print(f"wrote {out} ({len(frames)} frames, {out.stat().st_size / 1e6:.2f} MB): episode seed {seed}, "
          f"{'success' if evaluation['success'] else 'failure'} (mode {evaluation['mode']}; {stages})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
