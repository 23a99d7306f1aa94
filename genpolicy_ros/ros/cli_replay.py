"""``genpolicy replay BAG``: play a recording into the policy node with ``/clock``; record its output.

    genpolicy replay demos.bag --model models/reach_flow --seed 0 --out run_a
    genpolicy replay demos.bag --model models/reach_flow --seed 0 --out run_b --compare run_a
    genpolicy replay --compare-only run_a run_b

The bag's ``/joint_states`` (and camera, for image models) are played with their original
header stamps while ``/clock`` is stepped in lockstep with the node (see
:mod:`genpolicy_ros.ros.replay`); what the node publishes (commands, ``~/action_chunk``)
is recorded into ``--out``. ``--compare OTHER`` then reports the largest difference to
another output bag: with the same bag, model and seed it is exactly 0.
Exit status: 0, or 3 when ``--compare`` finds a difference.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DIFFERENT_STATUS = 3


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bag", metavar="BAG", help="rosbag2 recording with /joint_states (e.g. from genpolicy collect)")
    p.add_argument("--model", metavar="DIR", default="", help="model directory (default: the shipped default model)")
    p.add_argument("--seed", type=int, default=0, help="the node's sampler seed (default 0)")
    p.add_argument("--out", metavar="OUTBAG", help="output bag to create (default: BAG_replay_seed<S>[_<n>])")
    p.add_argument("--compare", metavar="OTHER_OUTBAG", help="compare the new output with this earlier output bag")
    p.add_argument("--compare-only", action="store_true",
                   help="do not replay: compare BAG (an output bag) with --compare OTHER_OUTBAG")
    p.add_argument("--inference-delay-steps", type=int, default=0, metavar="N",
                   help="fixed inference delay in control steps (>= 0; default 0)")
    p.add_argument("--control-rate", type=float, default=100.0, metavar="HZ", help="node rate = clock step (100)")
    p.add_argument("--sampler", choices=("flow", "ddim", "ddpm"), help="sampler (default: the model's)")
    p.add_argument("--num-steps", type=int, metavar="N", help="sampler steps (default: the node's)")
    p.add_argument("--chunk-blending", choices=("none", "ensemble", "rtc"), default="rtc", help="default rtc")
    p.add_argument("--output-mode", choices=("joint_trajectory", "forward_command"), default="joint_trajectory")
    p.add_argument("--max-seconds", type=float, metavar="S", help="replay only the first S seconds of the bag")
    p.add_argument("--domain-id", type=int, metavar="ID", help="ROS_DOMAIN_ID (default: derived from the pid)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def _default_out(bag: str, seed: int) -> str:
    base = Path(bag).resolve()
    candidate = base.with_name(f"{base.name}_replay_seed{seed}")
    n = 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}_replay_seed{seed}_{n}")
    return str(candidate)


def _model_dir(given: str) -> str:
    """``--model``, else the policy node's default model (the shipped ``reach_flow``)."""
    from ..model_paths import resolve_model_path

    return resolve_model_path(given)


def run(args) -> int:
    from .replay import ReplayConfig, compare_bags, replay_bag

    try:
        if args.compare_only:
            if not args.compare:
                print("genpolicy replay: --compare-only needs --compare OTHER_OUTBAG", file=sys.stderr)
                return 2
            out = args.bag
        else:
            cfg = ReplayConfig(bag=args.bag, model_dir=_model_dir(args.model),
                               out=args.out or _default_out(args.bag, args.seed), seed=args.seed,
                               inference_delay_steps=args.inference_delay_steps, control_rate_hz=args.control_rate,
                               sampler=args.sampler, num_steps=args.num_steps, chunk_blending=args.chunk_blending,
                               output_mode=args.output_mode, max_seconds=args.max_seconds,
                               domain_id=args.domain_id, progress=args.progress)
            result = replay_bag(cfg)
            out = result.out
            print(f"replayed {result.steps} steps ({result.bag_span_s:.2f} s of bag, {result.played} played, "
                  f"{result.chunks_requested} chunks) in {result.wall_s} s -> {out} {result.recorded}")
        if args.compare:
            report = compare_bags(out, args.compare)
            print(json.dumps(report, indent=2))
            verdict = "identical" if report["identical"] else "DIFFERENT"
            print(f"compare: {verdict} (max |d| per topic: "
                  f"{ {t: v['max_abs_diff'] for t, v in report['topics'].items()} })", file=sys.stderr)
            return 0 if report["identical"] else DIFFERENT_STATUS
    except (ValueError, RuntimeError, TimeoutError, FileNotFoundError) as exc:
        print(f"genpolicy replay: {exc}", file=sys.stderr)
        return 1
    return 0
