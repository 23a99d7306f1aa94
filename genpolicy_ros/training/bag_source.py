"""``genpolicy train --bag``: recordings of any robot -> the episode data set the trainer reads.

The meaning of the bag's streams (:class:`~genpolicy_ros.data.bag_mapping.BagMapping`)
comes from the options below, else from the defaults of a task the user named (``--task``,
handed in as plain values in ``args.task_defaults`` by the CLI wiring), else from what
``genpolicy collect`` recorded in the bag, else from the bag itself; the mapping used is
printed with where each part came from. Under torchrun only rank 0 converts; the other
ranks wait for its marker file.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Optional

CONVERTED_MARKER = ".converted"


def _names(text: str) -> list:
    return [t.strip() for t in str(text).split(",") if t.strip()]


def add_bag_arguments(group) -> None:
    """The ``--bag`` mapping options (each overrides what would be inferred)."""
    group.add_argument("--action-joints", type=_names, metavar="A,B,...",
                       help="with --bag: the commanded joints, in order (default: the names in the JointTrajectory "
                            "messages; needed for a Float64MultiArray command topic)")
    group.add_argument("--state-joints", type=_names, metavar="A,B,...",
                       help="with --bag: the JointState entries observed (default: every name in the first "
                            "JointState)")
    group.add_argument("--state-input", action="append", metavar="NAME=TYPE:n1,n2",
                       help="with --bag: a non-joint input on topic /NAME, TYPE point (PointStamped x,y,z) or pose "
                            "(PoseStamped x,y,z,qw,qx,qy,qz), names mapped in order; repeatable (default: every "
                            "PointStamped/PoseStamped topic, entries NAME_x, NAME_y, ...)")
    group.add_argument("--cameras", type=_names, metavar="NAME[=TOPIC],...",
                       help="with --bag --images: camera names (and their Image/CompressedImage topics; default: "
                            "the recorded image topics)")
    group.add_argument("--action-topic", metavar="TOPIC",
                       help="with --bag: the command topic (default: the JointTrajectory topic, else the "
                            "Float64MultiArray one)")


def mapping_options(args) -> dict:
    """The explicit choices among ``args`` as :func:`infer_bag_mapping` keywords."""
    from ..data.bag_mapping import parse_state_input

    out = {}
    if getattr(args, "action_joints", None):
        out["action_joints"] = args.action_joints
    if getattr(args, "state_joints", None):
        out["state_joints"] = args.state_joints
    if getattr(args, "state_input", None):
        out["state_inputs"] = dict(parse_state_input(t) for t in args.state_input)
    if getattr(args, "cameras", None):
        out["cameras"] = {c.split("=", 1)[0]: (c.split("=", 1)[1] if "=" in c else None) for c in args.cameras}
    if getattr(args, "action_topic", None):
        out["action_topic"] = args.action_topic
    if getattr(args, "dt", None) is not None:
        out["dt"] = args.dt
    return out


def dataset_from_bags(args: argparse.Namespace) -> Path:
    """Convert ``args.bag`` into ``OUT/dataset`` (rank 0; the other ranks wait) and return it."""
    from ..data.bag_mapping import convert_bags, infer_bag_mapping
    from ..data.episodes import METADATA_FILE

    target = Path(args.out) / "dataset"
    done = target / CONVERTED_MARKER
    if int(os.environ.get("RANK", "0")) == 0:
        for bag in args.bag:
            if not (Path(bag) / "metadata.yaml").is_file():
                raise FileNotFoundError(f"{bag}: not a rosbag2 directory (no metadata.yaml)")
        if done.exists():
            done.unlink()
        target.parent.mkdir(parents=True, exist_ok=True)
        task_defaults: Optional[dict] = getattr(args, "task_defaults", None)
        mapping = infer_bag_mapping(args.bag, images=bool(args.images), task_defaults=task_defaults,
                                    **mapping_options(args))
        print(f"genpolicy train: {mapping.describe()}", file=sys.stderr)
        report = convert_bags(args.bag, target, mapping).report
        print(f"genpolicy train: {report.episodes_written} episodes, {report.rows} rows -> {target}"
              + "".join(f"\n  note: {n}" for n in report.notes)
              + (f"\n  skipped: {report.skipped_episodes}" if report.skipped_episodes else "")
              + (f"\n  rejected messages: {report.rejected_messages}" if report.rejected_messages else ""),
              file=sys.stderr)
        done.write_text("ok\n")
        return target
    deadline = time.monotonic() + 600.0
    while not (done.exists() and (target / METADATA_FILE).exists()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"rank 0 did not finish converting the bags into {target}")
        time.sleep(0.5)
    return target
