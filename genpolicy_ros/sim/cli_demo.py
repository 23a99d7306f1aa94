"""``genpolicy demo`` (what ``make demo`` runs): the first thing a new user sees.

Runs a few closed-loop episodes over real ROS 2 topics (the MuJoCo sim node and the policy
node, see :mod:`genpolicy_ros.sim.evaluation`): the shipped default flow-matching model on
the reaching task, then the obstacle variant's flow model and its MSE regression baseline
(same demonstrations, same network). Prints a success / mode / latency / jitter table and
writes ``demo_report/demo.png`` (fingertip paths coloured by the mode each episode chose,
one panel per run) and ``demo_report/demo.json``.

Every target can be reached elbow up or elbow down. In the obstacle variant a post stands
where the average of the two modes passes: the regression baseline's first chunk averages
the modes and runs into it, the generative policy commits to one mode per episode.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Optional

from ..model_paths import find_shipped_model, shipped_model_dirs

DEFAULT_FLOW = "reach_flow"
OBSTACLE_FLOW = "obstacle_flow"
DEFAULT_MSE = "obstacle_mse"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--episodes", type=int, default=6, metavar="N", help="episodes per model (default 6)")
    p.add_argument("--out", default="demo_report", metavar="DIR", help="report directory (default demo_report)")
    p.add_argument("--flow-model", metavar="DIR", help=f"flow model (default: the shipped models/{DEFAULT_FLOW})")
    p.add_argument("--obstacle-flow-model", metavar="DIR",
                   help=f"flow model of the obstacle variant (default: models/{OBSTACLE_FLOW})")
    p.add_argument("--mse-model", metavar="DIR",
                   help=f"regression baseline of the obstacle variant (default: models/{DEFAULT_MSE})")
    p.add_argument("--no-mse", action="store_true", help="skip the regression baseline")
    p.add_argument("--no-obstacle", action="store_true", help="only the default model on the plain task")
    p.add_argument("--seed", type=int, default=0, help="sim seed (default 0)")
    p.add_argument("--chunk-blending", choices=("none", "ensemble", "rtc"),
                   help="how chunks join (default: the policy node's default)")
    p.add_argument("--domain-id", type=int, metavar="ID", help="ROS_DOMAIN_ID (default: derived from the pid)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")


def find_model(name: str, given: Optional[str]) -> Optional[Path]:
    """``given`` if it is a model directory, else the shipped model ``name`` (``model_paths``)."""
    if given:
        return Path(given) if (Path(given) / "config.json").is_file() else None
    return find_shipped_model(name)


def run(args) -> int:
    from ..tasks.model_task import model_task
    from .evaluation import EvalConfig, check_schema, evaluate
    from .report import format_table, plot_trajectories

    wanted = [("flow", DEFAULT_FLOW, args.flow_model, "reach")]  # (label, shipped name, --option, task)
    if not args.no_obstacle:
        wanted.append(("flow", OBSTACLE_FLOW, args.obstacle_flow_model, "reach_obstacle"))
        if not args.no_mse:
            wanted.append(("mse", DEFAULT_MSE, args.mse_model, "reach_obstacle"))
    models = []
    for label, name, given, task in wanted:
        path = find_model(name, given)
        if path is None:
            where = given or " or ".join(str(d / name) for d in shipped_model_dirs())
            print(f"genpolicy demo: the {label} model was not found ({where}).\n"
                  "  scripts/build_default_models.sh rebuilds every shipped model; or pass --flow-model /\n"
                  "  --obstacle-flow-model / --mse-model (or --no-obstacle / --no-mse).", file=sys.stderr)
            return 1
        models.append((label, path, model_task(path) or task))  # the task the model records, if any

    t0 = time.monotonic()
    docs = []
    try:
        for label, path, task in models:
            print(f"genpolicy demo: {args.episodes} episodes of task {task} with {label} model {path} "
                  "(sim + policy node over ROS 2)", file=sys.stderr)
            result = evaluate(EvalConfig(model_dir=str(path), episodes=args.episodes, seed=args.seed,
                                         chunk_blending=args.chunk_blending, domain_id=args.domain_id,
                                         progress=args.progress, task=task))
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
    titles = [f"{label}: {path.name}" + (" (obstacle)" if task == "reach_obstacle" else "")
              for label, path, task in models]
    png = plot_trajectories(docs, out / "demo.png", titles=titles)
    (out / "demo.json").write_text(json.dumps({"runs": docs}, indent=2, allow_nan=False))
    print()
    print(format_table(docs))
    print(f"\nlatency = generation time per chunk in the policy node; jitter = |command inter-arrival - period| "
          f"where the subscriber receives it. {time.monotonic() - t0:.0f} s in total.")
    print(f"report: {png} and {out / 'demo.json'}")
    return 0
