"""``genpolicy convert``: demonstrations from one format into another.

Sources (one): ``--bag BAG`` (repeatable; the sim's recordings, resampled as ``genpolicy
train --bag`` does), ``--data DIR`` (episode data set), ``--lerobot DIR`` (LeRobotDataset
v3), ``--robomimic FILE`` (HDF5). Targets (``--to``): ``lerobot`` (a LeRobotDataset v3
that LeRobot ≥ 0.4 loads: parquet, H.264 MP4 per camera, meta/), or ``episodes`` (the
episode data set ``genpolicy train --data`` reads). Formats and mapping rules:
``docs/data.md``.

    genpolicy convert --bag demos_bag --to lerobot --out demos_lerobot --task "reach the target"
    genpolicy convert --robomimic lift.hdf5 --obs-keys robot0_eef_pos,agentview_image --to episodes --out lift

A separate verb rather than an option of ``collect``: any recorded or downloaded data set
converts (not only the sim's), and the bag stays the raw record a conversion can be redone from.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path


def add_arguments(p) -> None:
    from .sources import add_import_arguments

    src = p.add_argument_group("source (one)")
    src.add_argument("--bag", metavar="BAG", action="append",
                     help="rosbag2 recording(s) of the sim (`genpolicy collect`); repeatable")
    src.add_argument("--data", metavar="DIR", help="episode data set directory (docs/episode_format.md)")
    add_import_arguments(src, training=False)
    src.add_argument("--images", action="store_true",
                     help="include the cameras (--bag: the recorded camera; --lerobot/--robomimic: every camera "
                          "unless --obs-keys names them)")
    src.add_argument("--dt", type=float, metavar="S",
                     help="--bag: resampling period (default 0.05 s); --robomimic: sample period (default from "
                          "env_args control_freq, else 0.05 s)")
    out = p.add_argument_group("target")
    out.add_argument("--to", choices=("lerobot", "episodes"), required=True,
                     help="lerobot: LeRobotDataset v3 directory; episodes: episode data set directory")
    out.add_argument("--out", metavar="DIR", required=True, help="directory to create (must not exist or be empty)")
    out.add_argument("--task", metavar="TEXT",
                     help="--to lerobot: the task text of every episode (default 'genpolicy_ros demonstration')")
    out.add_argument("--robot-type", metavar="NAME", help="--to lerobot: info.json robot_type (default null)")
    out.add_argument("--crf", type=int, default=18, metavar="N",
                     help="--to lerobot: H.264 quality, 0 (lossless) .. 51 (default 18)")


def _source(args, scratch: Path):
    """(metadata, episodes, description lines)."""
    from .episodes import EpisodeDataset

    if args.bag:
        from .bag_mapping import bags_to_dataset_dir, infer_bag_mapping

        mapping = infer_bag_mapping(args.bag, images=args.images, dt=args.dt)  # recorded by collect, or inferred
        ds = EpisodeDataset(bags_to_dataset_dir(args.bag, scratch / "bag_dataset", mapping=mapping))
        return ds.metadata, list(ds), f"bags {args.bag}: {len(ds)} episodes at dt {ds.metadata.dt:g} s"
    if args.data:
        ds = EpisodeDataset(args.data)
        return ds.metadata, list(ds), f"episode data set {args.data}: {len(ds)} episodes"
    from .sources import read_import

    metadata, episodes, mapping = read_import(args)
    return metadata, episodes, mapping.describe()


def run(args) -> int:
    given = [f"--{n}" for n in ("bag", "data", "lerobot", "robomimic") if getattr(args, n, None)]
    if len(given) != 1:
        print(f"genpolicy convert: give exactly one source (--bag, --data, --lerobot or --robomimic), got "
              f"{given or 'none'}", file=sys.stderr)
        return 2
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        print(f"genpolicy convert: --out {out} exists and is not an empty directory", file=sys.stderr)
        return 2
    if not 0 <= args.crf <= 51:
        print(f"genpolicy convert: --crf must be in 0..51, got {args.crf}", file=sys.stderr)
        return 2
    try:
        with tempfile.TemporaryDirectory(prefix="genpolicy_convert_") as scratch:
            metadata, episodes, description = _source(args, Path(scratch))
            print(description, file=sys.stderr)
            if args.to == "episodes":
                from .sources import write_episode_dir

                write_episode_dir(out, metadata, episodes)
                print(f"genpolicy convert: wrote {len(episodes)} episodes to {out} (episode data set)")
                return 0
            from .lerobot_write import write_lerobot

            summary = write_lerobot(out, metadata, episodes, task=args.task, robot_type=args.robot_type,
                                    crf=args.crf)
    except (ValueError, FileExistsError, FileNotFoundError) as exc:
        print(f"genpolicy convert: error: {exc}", file=sys.stderr)
        return 1
    moved = f", {summary['resampled_rows']} rows moved onto the 1/fps grid" if summary["resampled_rows"] else ""
    print(f"genpolicy convert: wrote LeRobotDataset v3.0 to {out}: {summary['episodes']} episodes, "
          f"{summary['frames']} frames at {summary['fps']} fps{moved}")
    return 0
