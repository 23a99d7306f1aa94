"""The ``genpolicy`` command: a thin dispatcher over one module per verb.

Each verb lives in its own module providing::

    add_arguments(parser: argparse.ArgumentParser) -> None
    run(args: argparse.Namespace) -> int          # exit status

Only the chosen verb's module is imported (``genpolicy train`` does not pay for the
simulator). Verbs that need a task's knowledge (the simulator, a task's defaults) are wired
in ``sim/`` or ``cli_verbs/``; the generic layers below them take plain arguments.

Also usable as ``python -m genpolicy_ros.cli`` (what ``torchrun -m`` needs).
"""
from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass
from typing import List, Optional, Sequence


@dataclass(frozen=True)
class Verb:
    name: str
    help: str
    module: str  # implementation: add_arguments(parser), run(args) -> int


VERBS: List[Verb] = [
    Verb("demo", "closed loop on this machine: sim node + policy node over ROS 2 with the shipped model; "
         "prints success rate, latency and jitter, writes a report", "genpolicy_ros.sim.cli_demo"),
    Verb("collect", "record scripted-expert demonstrations from the simulator as a rosbag2 (MCAP)",
         "genpolicy_ros.sim.cli_collect"),
    Verb("convert", "convert demonstrations between formats: bags, episode data sets, LeRobotDataset v3, "
         "robomimic HDF5 -> LeRobotDataset or episode data set", "genpolicy_ros.data.cli_convert"),
    Verb("train", "train a policy on an episode data set (or bags) into a model directory; resumable; "
         "torchrun for several processes", "genpolicy_ros.cli_verbs.train"),
    Verb("eval", "closed-loop evaluation episodes of MODEL: success rate, mode histogram (--json FILE)",
         "genpolicy_ros.sim.cli_eval"),
    Verb("bench", "latency per sampler/steps/backend, executor jitter, seam smoothness of MODEL (--json FILE)",
         "genpolicy_ros.cli_verbs.bench"),
    Verb("export", "export MODEL to ONNX / TensorRT engines in a cache keyed by model hash, GPU, versions, "
         "precision", "genpolicy_ros.runtime.cli_export"),
    Verb("replay", "play a recorded BAG into the policy node with /clock and record what it publishes",
         "genpolicy_ros.ros.cli_replay"),
    Verb("node", "run the policy node (same as `ros2 run genpolicy_ros policy_node`)",
         "genpolicy_ros.ros.cli_node"),
    Verb("sim", "run the MuJoCo simulation node", "genpolicy_ros.sim.cli_sim"),
]
VERBS_BY_NAME = {v.name: v for v in VERBS}


def build_parser(load_verbs: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The argument parser; the verbs named in ``load_verbs`` get their full options."""
    from genpolicy_ros import __version__

    parser = argparse.ArgumentParser(
        prog="genpolicy",
        description="Real-time generative (flow matching / diffusion) robot policies for ROS 2.",
    )
    parser.add_argument("--version", action="version", version=f"genpolicy_ros {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True
    parser.set_defaults(_verb_parsers=sub.choices)
    for verb in VERBS:
        p = sub.add_parser(verb.name, help=verb.help, description=verb.help)
        if verb.name not in load_verbs:
            continue
        module = importlib.import_module(verb.module)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``genpolicy VERB [options]``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(load_verbs=[chosen] if chosen in VERBS_BY_NAME else [])
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        args._verb_parsers[args.verb].error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print(f"genpolicy {args.verb}: interrupted", file=sys.stderr)
        return 130


def policy_node_main(argv: Optional[Sequence[str]] = None) -> int:
    """Console script ``policy_node`` (``ros2 run genpolicy_ros policy_node``) = ``genpolicy node``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return main(["node", *argv])


if __name__ == "__main__":
    sys.exit(main())
