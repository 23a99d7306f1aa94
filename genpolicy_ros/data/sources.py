"""Data sets in other formats, as ``genpolicy train`` and ``genpolicy convert`` take them.

``--lerobot DIR`` (LeRobotDataset v3, :mod:`.lerobot`) and ``--robomimic FILE``
(:mod:`.robomimic`) are read into episodes, the mapping used is printed, and the episodes
are written as an episode data set (``docs/episode_format.md``) that training reads like
``--data``. Shared options: ``--obs-keys`` (observation features / keys by name, state
order; image keys become cameras), ``--images`` (every camera when ``--obs-keys`` is not
given), ``--image-size HxW``, ``--mask SPLIT`` (robomimic), ``--dt`` (robomimic's sample
period; LeRobot's is ``1 / fps``).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import List, Optional, Tuple

IMPORT_FLAGS = ("lerobot", "robomimic")


def add_import_arguments(group, training: bool = True) -> None:
    """The source options (every one has help text)."""
    then = "; converted into an episode data set at OUT/dataset" if training else ""
    group.add_argument("--lerobot", metavar="DIR",
                       help=f"local LeRobotDataset (v3: meta/info.json, data/, videos/){then} (mapping printed; "
                            "docs/data.md)")
    group.add_argument("--robomimic", metavar="FILE",
                       help=f"robomimic HDF5 file (data/demo_N/{{obs/<key>, actions}}){then} (mapping printed; "
                            "docs/data.md)")
    group.add_argument("--obs-keys", metavar="K1,K2", type=_key_list,
                       help="with --lerobot/--robomimic: observation features by name, in state order; image "
                            "keys become cameras (default: observation.state / every low-dim key)")
    group.add_argument("--image-size", metavar="HxW", type=parse_image_size,
                       help="with --lerobot/--robomimic: bring every camera to H x W pixels (see --image-fit)")
    group.add_argument("--image-fit", choices=("resize", "center_crop_resize"), default="resize",
                       help="with --image-size: scale the whole frame (resize, default) or crop the largest "
                            "centred region of the target aspect ratio first (center_crop_resize); recorded in the "
                            "model so the policy node fits camera frames the same way")
    group.add_argument("--mask", metavar="SPLIT",
                       help="with --robomimic: only the demos listed in mask/SPLIT (e.g. train)")


def _key_list(text: str) -> List[str]:
    keys = [k.strip() for k in text.split(",") if k.strip()]
    if not keys:
        raise argparse.ArgumentTypeError("give at least one key, comma-separated")
    return keys


def parse_image_size(text: str) -> Tuple[int, int]:
    """``"96x128"`` → (96, 128) (height, width)."""
    parts = text.lower().split("x")
    try:
        h, w = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"image size must be HxW (e.g. 96x96), got {text!r}") from None
    if not (0 < h <= 4096 and 0 < w <= 4096):
        raise argparse.ArgumentTypeError(f"image size must be between 1x1 and 4096x4096, got {text!r}")
    return h, w


def read_import(args):
    """(DatasetMetadata, episodes, mapping) of ``--lerobot`` or ``--robomimic``."""
    if getattr(args, "lerobot", None):
        if getattr(args, "mask", None):
            raise ValueError("--mask applies to --robomimic only")
        from .lerobot import read_lerobot

        return read_lerobot(args.lerobot, obs_keys=args.obs_keys, images=bool(args.images),
                            image_size=args.image_size, image_fit=getattr(args, "image_fit", "resize"))
    from .robomimic import read_robomimic

    return read_robomimic(args.robomimic, obs_keys=args.obs_keys, images=bool(args.images),
                          image_size=args.image_size, split=args.mask, dt=getattr(args, "dt", None),
                          image_fit=getattr(args, "image_fit", "resize"))


def replace_dataset_dir(out: Path) -> None:
    """Empty ``out`` if it holds only an episode data set (derived data); refuse anything else."""
    from .episodes import EPISODE_PATTERN, METADATA_FILE

    if not out.exists():
        return
    others = [p.name for p in out.iterdir() if p.name not in (METADATA_FILE, ".converted")
              and not EPISODE_PATTERN.match(p.name)]
    if others:
        raise FileExistsError(f"{out} holds files other than an episode data set ({others[:5]}); refusing to "
                              "replace it")
    for p in out.iterdir():
        p.unlink()


def write_episode_dir(out, metadata, episodes) -> Path:
    from .episodes import write_dataset

    out = Path(out)
    replace_dataset_dir(out)
    write_dataset(out, metadata, episodes)
    return out


def dataset_for_training(args) -> Path:
    """Convert the import into OUT/dataset (rank 0; other ranks wait) and return its path."""
    from .episodes import METADATA_FILE

    target = Path(args.out) / "dataset"
    done = target / ".converted"
    if int(os.environ.get("RANK", "0")) == 0:
        if done.exists():
            done.unlink()
        metadata, episodes, mapping = read_import(args)
        print(mapping.describe(), file=sys.stderr)
        write_episode_dir(target, metadata, episodes)
        done.write_text("ok\n")
        return target
    deadline = time.monotonic() + 600.0
    while not (done.exists() and (target / METADATA_FILE).exists()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"rank 0 did not finish converting the data set into {target}")
        time.sleep(0.5)
    return target


def prepare_for_training(args) -> Optional[int]:
    """``genpolicy train`` hook: sets ``args.data`` for ``--lerobot``/``--robomimic``; an exit status on error."""
    given = [f"--{n}" for n in ("data", "bag", *IMPORT_FLAGS) if getattr(args, n, None)]
    if len(given) > 1:
        print(f"genpolicy train: give one data source, not {' and '.join(given)}", file=sys.stderr)
        return 2
    try:
        args.data = str(dataset_for_training(args))
    except (ValueError, FileExistsError, FileNotFoundError, TimeoutError) as exc:
        print(f"genpolicy train: error converting {given[0]}: {exc}", file=sys.stderr)
        return 1
    return None
