"""``genpolicy eval MODEL``: closed-loop episodes over ROS 2; success rate, modes, latency.

    genpolicy eval models/reach_flow --episodes 50 --json flow.json
    genpolicy eval models/reach_ddim --episodes 50 --num-steps 10
    genpolicy eval models/reach_flow --policy mse --episodes 50      # the MSE baseline
    genpolicy eval models/reach_flow --compare --episodes 50         # MODEL, then the baseline

The sim node and the policy node (a ``genpolicy node`` child process) talk over real
topics on a ROS domain of their own; see :mod:`genpolicy_ros.sim.evaluation`. The task is
the one MODEL was trained on (``metadata.task`` of its config.json; ``reach`` for models
that record none); ``--task`` names it explicitly and must match unless ``--force``
(``--obstacle`` is the older spelling of ``--task reach_obstacle``).
``--policy mse`` evaluates the regression baseline trained on MODEL's data with MODEL's
network (``--mse-model DIR``, default ``models/reach_mse`` next to MODEL or ``MODEL_mse``;
trained there with ``genpolicy train --kind regression`` when missing, on ``--data`` or
the data set named in MODEL's config.json).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL", help="model directory (config.json + model.safetensors)")
    p.add_argument("--episodes", type=int, default=50, metavar="N", help="episodes per run (default 50)")
    p.add_argument("--json", metavar="FILE", help="write the result (with --compare: {'runs': [...]}) as JSON")
    p.add_argument("--policy", choices=("model", "mse"), default="model",
                   help="evaluate MODEL itself (default) or its MSE regression baseline")
    p.add_argument("--compare", action="store_true", help="evaluate MODEL and then its MSE baseline")
    p.add_argument("--mse-model", metavar="DIR", help="the regression baseline's model directory")
    p.add_argument("--data", metavar="DIR", help="data set to train the baseline on (default: MODEL's)")
    p.add_argument("--mse-steps", type=int, metavar="N", help="training steps of the baseline (train default)")
    p.add_argument("--seed", type=int, default=0, help="sim seed: episode i uses seed*100003+i (default 0)")
    p.add_argument("--policy-seed", type=int, default=0, help="the policy node's sampler seed (default 0)")
    p.add_argument("--sampler", choices=("flow", "ddim", "ddpm"), help="sampler (default: the model's)")
    p.add_argument("--num-steps", type=int, metavar="N", help="sampler steps per chunk (default: node's, 10)")
    p.add_argument("--output-mode", choices=("joint_trajectory", "forward_command"), default="joint_trajectory",
                   help="command message type (default joint_trajectory)")
    p.add_argument("--chunk-blending", choices=("none", "ensemble", "rtc"),
                   help="how chunks join (default: the policy node's default)")
    p.add_argument("--action-horizon", type=int, metavar="N",
                   help="T_a: rows executed per chunk (default: the model's); larger tolerates more latency")
    p.add_argument("--control-rate", type=float, default=100.0, metavar="HZ", help="command rate (default 100)")
    p.add_argument("--rtc-mode", choices=("hard", "guided"), help="with --chunk-blending rtc: how the frozen prefix "
                   "is imposed (default: the node's)")
    p.add_argument("--emulate-latency-ms", type=float, default=0.0, metavar="MS",
                   help="latency emulation in the policy node's generation process (every chunk takes at least "
                        "MS; off by default): evaluate as if the model were that slow")
    p.add_argument("--episode-s", type=float, default=None, metavar="S",
                   help="episode length (default: the task's, 3 s for reach)")
    p.add_argument("--rate-factor", type=float, default=1.0, metavar="X",
                   help="simulated seconds per wall second (default 1.0 = real time, the honest setting)")
    p.add_argument("--task", metavar="NAME",
                   help="registered task to run (default: the model's metadata.task, else reach); a task other "
                        "than the model's is an error unless --force")
    p.add_argument("--force", action="store_true", help="evaluate on --task even if the model was trained on another")
    p.add_argument("--obstacle", action="store_true",
                   help="= --task reach_obstacle (the older option; redundant for models that record their task)")
    p.add_argument("--backend", default="auto", help="policy node backend (default auto)")
    p.add_argument("--device", default="auto", help="policy node device (default auto)")
    p.add_argument("--domain-id", type=int, metavar="ID", help="ROS_DOMAIN_ID (default: derived from the pid)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def requested_task(args):
    """``--task``, or ``reach_obstacle`` for ``--obstacle``, or None (the model's own)."""
    if args.obstacle and args.task not in (None, "reach_obstacle"):
        raise ValueError(f"--obstacle is --task reach_obstacle; it contradicts --task {args.task}")
    return args.task or ("reach_obstacle" if args.obstacle else None)


def _eval_config(args, model_dir: str, task: str):
    from .evaluation import EvalConfig

    return EvalConfig(model_dir=model_dir, episodes=args.episodes, seed=args.seed, sampler=args.sampler,
                      num_steps=args.num_steps, output_mode=args.output_mode, chunk_blending=args.chunk_blending,
                      control_rate_hz=args.control_rate, action_horizon=args.action_horizon, episode_s=args.episode_s,
                      rate_factor=args.rate_factor, policy_seed=args.policy_seed, backend=args.backend,
                      device=args.device, domain_id=args.domain_id, progress=args.progress, task=task,
                      rtc_prefix_mode=args.rtc_mode, emulate_latency_ms=args.emulate_latency_ms)


def _baseline(args) -> str:
    from .eval_baseline import default_baseline_dir, ensure_regression_baseline

    out = args.mse_model or str(default_baseline_dir(args.model))
    return ensure_regression_baseline(args.model, out, data=args.data, steps=args.mse_steps,
                                      progress=args.progress)


def run(args) -> int:
    from ..tasks.model_task import resolve_eval_task
    from .evaluation import evaluate
    from .report import format_table

    try:
        task = resolve_eval_task(args.model, requested_task(args), force=args.force)
        targets = []
        if args.compare or args.policy == "model":
            targets.append(args.model)
        if args.compare or args.policy == "mse":
            targets.append(_baseline(args))
        docs = []
        for model_dir in targets:
            cfg = _eval_config(args, model_dir, resolve_eval_task(model_dir, task, force=args.force))
            print(f"genpolicy eval: {Path(model_dir).name} on task {cfg.task_name}", file=sys.stderr)
            if model_dir != args.model:  # the baseline has no sampler
                from dataclasses import replace

                cfg = replace(cfg, sampler=None, num_steps=None)
            result = evaluate(cfg)
            docs.append(result.to_dict())
            print(result.summary_line(), file=sys.stderr)
    except (ValueError, RuntimeError, TimeoutError, FileNotFoundError) as exc:
        print(f"genpolicy eval: {exc}", file=sys.stderr)
        return 1
    print(format_table(docs))
    if args.json:
        doc = docs[0] if len(docs) == 1 else {"runs": docs}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(doc, indent=2, allow_nan=False))
        print(f"wrote {args.json}", file=sys.stderr)
    return 0
