"""``genpolicy demo`` (what ``make demo`` runs): the first thing a new user sees.

Runs a few closed-loop episodes over real ROS 2 topics (the MuJoCo sim node and the policy
node, see :mod:`genpolicy_ros.sim.evaluation`) with the shipped flow-matching model and
with the MSE regression baseline trained on the same data, prints a success / mode /
latency / jitter table and writes ``demo_report/demo.png`` (fingertip paths coloured by
the mode each episode chose, flow vs MSE side by side) and ``demo_report/demo.json``.

The task has two equally good solutions (elbow up / elbow down); the regression baseline
averages them and misses, the generative policy commits to one per episode.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import List, Optional

DEFAULT_FLOW = "reach_flow"
DEFAULT_MSE = "reach_mse"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--episodes", type=int, default=6, metavar="N", help="episodes per model (default 6)")
    p.add_argument("--out", default="demo_report", metavar="DIR", help="report directory (default demo_report)")
    p.add_argument("--flow-model", metavar="DIR", help=f"flow model (default: the shipped models/{DEFAULT_FLOW})")
    p.add_argument("--mse-model", metavar="DIR", help=f"regression baseline (default: models/{DEFAULT_MSE})")
    p.add_argument("--no-mse", action="store_true", help="only the flow model")
    p.add_argument("--seed", type=int, default=0, help="sim seed (default 0)")
    p.add_argument("--chunk-blending", choices=("none", "ensemble", "rtc"),
                   help="how chunks join (default: the policy node's default)")
    p.add_argument("--domain-id", type=int, metavar="ID", help="ROS_DOMAIN_ID (default: derived from the pid)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")


def models_dirs() -> List[Path]:
    """Where shipped models live: the installed share directory, then the source tree."""
    dirs = []
    try:
        from ament_index_python.packages import get_package_share_directory

        dirs.append(Path(get_package_share_directory("genpolicy_ros")) / "models")
    except Exception:  # noqa: BLE001 - not installed through colcon
        pass
    dirs.append(Path(__file__).resolve().parents[2] / "models")
    return dirs


def find_model(name: str, given: Optional[str]) -> Optional[Path]:
    if given:
        return Path(given) if (Path(given) / "config.json").is_file() else None
    for d in models_dirs():
        if (d / name / "config.json").is_file():
            return d / name
    return None


def run(args) -> int:
    from .evaluation import EvalConfig, check_schema, evaluate
    from .report import format_table, plot_trajectories

    wanted = [("flow", DEFAULT_FLOW, args.flow_model)] + ([] if args.no_mse else [("mse", DEFAULT_MSE, args.mse_model)])
    models = []
    for label, name, given in wanted:
        path = find_model(name, given)
        if path is None:
            where = given or " or ".join(str(d / name) for d in models_dirs())
            print(f"genpolicy demo: the {label} model was not found ({where}).\n"
                  "  Create it with:\n"
                  "    genpolicy collect --episodes 200 --out demos_bag\n"
                  f"    genpolicy train --bag demos_bag --kind {'flow' if label == 'flow' else 'regression'} "
                  f"--out models/{name}\n"
                  "  or pass --flow-model / --mse-model (or --no-mse).", file=sys.stderr)
            return 1
        models.append((label, path))

    t0 = time.monotonic()
    docs = []
    try:
        for label, path in models:
            print(f"genpolicy demo: {args.episodes} episodes with {label} model {path} (sim + policy node over ROS 2)",
                  file=sys.stderr)
            result = evaluate(EvalConfig(model_dir=str(path), episodes=args.episodes, seed=args.seed,
                                         chunk_blending=args.chunk_blending, domain_id=args.domain_id, progress=args.progress))
            doc = result.to_dict()
            problems = check_schema(doc)
            if problems:
                raise RuntimeError(f"invalid eval result: {problems}")
            docs.append(doc)
    except (ValueError, RuntimeError, TimeoutError) as exc:
        print(f"genpolicy demo: {exc}", file=sys.stderr)
        return 1

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    titles = [f"{label}: {path.name}" for label, path in models]
    png = plot_trajectories(docs, out / "demo.png", titles=titles)
    (out / "demo.json").write_text(json.dumps({"runs": docs}, indent=2, allow_nan=False))
    print()
    print(format_table(docs))
    print(f"\nlatency = generation time per chunk in the policy node; jitter = |command inter-arrival - period| "
          f"where the subscriber receives it. {time.monotonic() - t0:.0f} s in total.")
    print(f"report: {png} and {out / 'demo.json'}")
    return 0
