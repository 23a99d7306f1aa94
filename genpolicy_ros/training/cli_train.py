"""``genpolicy train``: an episode data set → a model directory.

Configuration is layered, later wins: built-in defaults → ``--config FILE`` (YAML or
JSON with optional sections ``policy:`` and ``train:``) → command-line options. The
action/observation specs and the nominal ``dt`` come from the data set's
``dataset.json``. With ``--resume`` the configuration saved in the newest checkpoint is
used; only ``--steps``, ``--save-every``, ``--log-every``, ``--keep-checkpoints``,
``--device`` and ``--num-workers`` may change it.

Config file example (see ``config/train_default.yaml``)::

    policy:
      kind: flow
      horizon: {T_o: 2, T_p: 16, T_a: 8}
      network: {name: unet1d, params: {down_dims: [32, 64]}}
    train:
      steps: 2000
      batch_size: 64

Several processes: ``torchrun --nproc_per_node N -m genpolicy_ros.cli train ...``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Optional

from .bag_source import add_bag_arguments
from .config import TrainConfig

#: ``--option`` → TrainConfig field, for options that map one to one.
_TRAIN_OPTIONS = {
    "steps": "steps",
    "batch_size": "batch_size",
    "lr": "lr",
    "weight_decay": "weight_decay",
    "warmup_steps": "warmup_steps",
    "grad_clip": "grad_clip_norm",
    "save_every": "save_every",
    "keep_checkpoints": "keep_checkpoints",
    "log_every": "log_every",
    "seed": "seed",
    "num_workers": "num_workers",
    "device": "device",
    "pad_after": "pad_after",
}
#: TrainConfig fields a resumed run may change.
_RESUME_OVERRIDABLE = ("steps", "save_every", "log_every", "keep_checkpoints", "device", "num_workers")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``genpolicy train`` (every one has help text: the CLI test checks it)."""
    p.epilog = _defaults_epilog()
    src = p.add_argument_group("data")
    src.add_argument("--data", metavar="DIR", help="episode data set directory (dataset.json + episode_*.npz; "
                     "format in docs/episode_format.md)")
    src.add_argument("--bag", metavar="BAG", action="append",
                     help="rosbag2 recording(s) to train on (`genpolicy collect`, or any robot's); repeatable. "
                          "Converted by header stamps into an episode data set at OUT/dataset; the mapping of "
                          "its topics (options below, else inferred) is printed")
    src.add_argument("--images", action="store_true",
                     help="with --bag: include the recorded cameras (image+proprio model); with --lerobot / "
                          "--robomimic: every camera")
    add_bag_arguments(src)
    from genpolicy_ros.data.sources import add_import_arguments

    add_import_arguments(src)
    src.add_argument("--out", metavar="DIR", required=True,
                     help="output directory: final model dir, checkpoints/, train_log.csv, loss.png")
    src.add_argument("--config", metavar="FILE",
                     help="YAML or JSON file with optional 'policy:' and 'train:' sections")
    pol = p.add_argument_group("policy")
    pol.add_argument("--kind", choices=("flow", "diffusion", "regression"),
                     help="generative model: flow matching, DDPM/DDIM diffusion, or the MSE regression baseline")
    pol.add_argument("--network", choices=("unet1d", "dit"),
                     help="denoiser network: 1-D conv U-Net with FiLM or transformer (DiT)")
    pol.add_argument("--T-o", dest="T_o", type=int, metavar="N", help="observation history length T_o")
    pol.add_argument("--T-p", dest="T_p", type=int, metavar="N", help="predicted action chunk length T_p")
    pol.add_argument("--T-a", dest="T_a", type=int, metavar="N", help="actions executed per chunk T_a (<= T_p)")
    pol.add_argument("--dt", type=float, metavar="S",
                     help="seconds between chunk rows (default: the data set's nominal dt)")
    tr = p.add_argument_group("training")
    tr.add_argument("--steps", type=int, metavar="N", help="optimiser steps in total")
    tr.add_argument("--batch-size", type=int, metavar="N", help="windows per optimiser step and process")
    tr.add_argument("--lr", type=float, metavar="LR", help="peak learning rate (AdamW; default 1e-4)")
    tr.add_argument("--weight-decay", type=float, metavar="WD", help="AdamW weight decay (default 1e-6)")
    tr.add_argument("--warmup-steps", type=int, metavar="N", help="linear LR warm-up steps before the cosine decay")
    tr.add_argument("--grad-clip", type=float, metavar="NORM", help="clip the gradient norm (0 = off)")
    tr.add_argument("--no-ema", action="store_true",
                    help="save the raw weights instead of an exponential moving average")
    tr.add_argument("--pad-after", type=int, metavar="N",
                    help="action rows a window may have past an episode end (default T_a - 1)")
    tr.add_argument("--seed", type=int, metavar="N", help="seed for weights, data order and noise")
    tr.add_argument("--device", metavar="DEV", help="auto (default), cpu, cuda or cuda:N")
    tr.add_argument("--num-workers", type=int, metavar="N", help="data-loader worker processes (default 0)")
    run = p.add_argument_group("checkpoints and output")
    run.add_argument("--save-every", type=int, metavar="N", help="checkpoint every N steps (0 = only at the end)")
    run.add_argument("--keep-checkpoints", type=int, metavar="N", help="keep the newest N checkpoints (0 = all)")
    run.add_argument("--log-every", type=int, metavar="N", help="log the mean loss every N steps")
    run.add_argument("--resume", action="store_true",
                     help="continue from the newest checkpoint in --out (starts fresh if there is none)")
    run.add_argument("--overwrite", action="store_true",
                     help="start afresh even if --out already holds a training run")
    run.add_argument("--stop-after", type=int, metavar="STEP",
                     help="stop after this many steps in total (with a checkpoint); continue later with --resume")
    run.add_argument("--progress", dest="progress", action="store_true", default=None,
                     help="always show the progress bar (default: only on a terminal, rank 0)")
    run.add_argument("--no-progress", dest="progress", action="store_false", help="never show the progress bar")
    run.add_argument("--debug-dump-weights", metavar="DIR",
                     help="debug: every process writes its final weights to DIR/weights_rank<r>.safetensors")


# --------------------------------------------------------------------------- config
def load_config_file(path) -> dict:
    """Read a YAML/JSON config file → {"policy": {...}, "train": {...}}."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        data = json.loads(text)
    else:
        import yaml

        data = yaml.safe_load(text)
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping with 'policy' and/or 'train' sections")
    unknown = sorted(set(data) - {"policy", "train"})
    if unknown:
        raise ValueError(f"{path}: unknown top-level keys {unknown} (allowed: policy, train)")
    for key in ("policy", "train"):
        if not isinstance(data.get(key) or {}, dict):
            raise ValueError(f"{path}: '{key}' must be a mapping")
    return {"policy": dict(data.get("policy") or {}), "train": dict(data.get("train") or {})}


def policy_config_from(metadata, data_actions, section: dict, args, extra_defaults: Optional[dict] = None):
    """PolicyConfig from data set metadata + config-file section + CLI options.

    ``extra_defaults``: ``observation`` / ``auxiliary`` entries that refine the data set's
    defaults (a named task's ``observation_defaults``); the file's section wins over both.
    The observation's ``state_inputs`` are the data set's inputs restricted to the observed
    state names."""
    import numpy as np

    from genpolicy_ros.core.config import FORMAT_VERSION, PolicyConfig

    section = dict(section)
    if metadata.joint_lower_limits is not None:
        lower, upper = metadata.joint_lower_limits, metadata.joint_upper_limits
    else:  # no limits in dataset.json: the demonstrated range plus a 5 % margin
        lo, hi = data_actions.min(axis=0).astype(np.float64), data_actions.max(axis=0).astype(np.float64)
        margin = np.maximum(0.05 * (hi - lo), 1e-3)
        lower, upper = (lo - margin).tolist(), (hi + margin).tolist()
    sizes = {tuple(s) for s in metadata.cameras.values()}
    if len(sizes) > 1:
        raise ValueError(f"all cameras must have one image size for this policy, got {metadata.cameras}")
    observation = {"state_names": metadata.state_names, "camera_names": metadata.camera_names}
    if sizes:
        observation["image_size"] = list(sizes.pop())
        observation["image_preprocess"] = metadata.image_preprocess  # the node fits frames the same way
    defaults = {
        "format_version": FORMAT_VERSION,
        "action": {"joint_names": metadata.joint_names, "lower_limits": lower, "upper_limits": upper},
        "observation": observation,
    }
    for key in ("observation", "auxiliary"):  # file sections refine the data set's defaults
        base = dict(defaults.get(key) or {})
        base.update(dict((extra_defaults or {}).get(key) or {}))
        base.update(dict(section.pop(key, None) or {}))
        if base:
            defaults[key] = base
    merged = {**defaults, **section}
    merged.setdefault("format_version", FORMAT_VERSION)
    observation = dict(merged["observation"])
    if "state_inputs" not in observation:
        observation["state_inputs"] = observed_state_inputs(metadata.state_inputs, observation["state_names"])
        merged["observation"] = observation
    horizon = dict(merged.get("horizon") or {})
    horizon.setdefault("dt", metadata.dt)
    for name in ("T_o", "T_p", "T_a", "dt"):
        if getattr(args, name, None) is not None:
            horizon[name] = getattr(args, name)
    merged["horizon"] = horizon
    if args.kind is not None:
        merged["kind"] = args.kind
    if args.network is not None:
        network = dict(merged.get("network") or {})
        if network.get("name") not in (None, args.network):
            network["params"] = {}  # the file's params belong to the other network
        network["name"] = args.network
        merged["network"] = network
    if args.seed is not None:
        merged["seed"] = args.seed
    return PolicyConfig.from_dict(merged)


def resumed_policy_config(saved: dict, metadata):
    """The PolicyConfig a checkpoint saved, with ``observation.state_inputs`` filled in from
    the data set when the checkpoint has none (runs started before data sets recorded their
    non-joint inputs): where the node reads those state entries is no part of the weights."""
    from genpolicy_ros.core.config import PolicyConfig

    saved = dict(saved)
    observation = dict(saved.get("observation") or {})
    if not observation.get("state_inputs") and metadata.state_inputs:
        observation["state_inputs"] = observed_state_inputs(metadata.state_inputs, observation.get("state_names", []))
        saved["observation"] = observation
    return PolicyConfig.from_dict(saved)


def observed_state_inputs(inputs: dict, observed) -> dict:
    """The data set's non-joint inputs that a model observing ``observed`` reads: each input
    with its observed names, which must be a leading part of its names (they map in order
    to the message fields)."""
    out = {}
    for name, entry in inputs.items():
        names = [n for n in entry["names"] if n in observed]
        if not names:
            continue
        if names != list(entry["names"][: len(names)]):
            raise ValueError(f"observation.state_names observe {names} of input {name!r} {entry['names']}: "
                             "the observed entries of an input must be its first ones (they map to the message "
                             "fields in order); observe a leading part or set observation.state_inputs")
        out[name] = {"type": entry["type"], "names": names}
    return out


def train_config_from(section: dict, args) -> TrainConfig:
    values = dict(section)
    for opt, name in _TRAIN_OPTIONS.items():
        if getattr(args, opt, None) is not None:
            values[name] = getattr(args, opt)
    if args.no_ema:
        ema = dict(values.get("ema") or {})
        ema["enabled"] = False
        values["ema"] = ema
    return TrainConfig.from_dict(values)


def _already_trained(out: Path) -> bool:
    from .trainer import CHECKPOINT_DIR, LOG_FILE

    return (out / CHECKPOINT_DIR).is_dir() or (out / LOG_FILE).is_file() or (out / "model.safetensors").is_file()


# --------------------------------------------------------------------------- run
def run(args) -> int:
    """Entry point of ``genpolicy train`` (returns the exit status)."""
    if args.bag and args.data:
        print("genpolicy train: give --data or --bag, not both", file=sys.stderr)
        return 2
    if args.lerobot or args.robomimic:  # LeRobotDataset / robomimic HDF5 -> OUT/dataset (docs/data.md)
        from genpolicy_ros.data.sources import prepare_for_training

        status = prepare_for_training(args)
        if status is not None:
            return status
    if args.bag:
        try:
            from .bag_source import dataset_from_bags

            args.data = str(dataset_from_bags(args))
        except (ValueError, FileExistsError, FileNotFoundError, TimeoutError) as exc:
            print(f"genpolicy train: error converting --bag: {exc}", file=sys.stderr)
            return 1
    if not args.data:
        print("genpolicy train: --data DIR is required (or --bag, --lerobot, --robomimic)", file=sys.stderr)
        return 2
    try:
        return _run(args)
    except (ValueError, FileExistsError, FileNotFoundError) as exc:
        print(f"genpolicy train: error: {exc}", file=sys.stderr)
        return 1


def _run(args) -> int:
    import numpy as np

    from genpolicy_ros.core.policy import GenerativePolicy
    from genpolicy_ros.data.dataset import WindowDataset
    from genpolicy_ros.data.episodes import EpisodeDataset

    from . import distributed
    from .trainer import Trainer, latest_checkpoint, read_trainer_state_json

    out = Path(args.out)
    source = EpisodeDataset(args.data)
    metadata = source.metadata
    episodes = list(source)  # read (and validate) every episode file once
    checkpoint = latest_checkpoint(out) if args.resume else None
    if checkpoint is not None:
        state = read_trainer_state_json(checkpoint)
        policy_cfg = resumed_policy_config(state["policy_config"], metadata)
        saved = state["train_config"]
        for opt, name in _TRAIN_OPTIONS.items():
            if name in _RESUME_OVERRIDABLE and getattr(args, opt, None) is not None:
                saved[name] = getattr(args, opt)
        train_cfg = TrainConfig.from_dict(saved)
        if policy_cfg.action.joint_names != tuple(metadata.joint_names):
            raise ValueError(f"--data joints {metadata.joint_names} differ from the checkpoint's "
                             f"{list(policy_cfg.action.joint_names)}")
    else:
        if not args.resume and not args.overwrite and _already_trained(out):
            raise FileExistsError(f"{out} already holds a training run: pass --resume to continue it "
                                  "or --overwrite to start afresh")
        file_cfg = load_config_file(args.config) if args.config else {"policy": {}, "train": {}}
        # A named task: what its policies observe and learn on the side (``--task``, the CLI wiring).
        extra = (getattr(args, "task_defaults", None) or {}).get("observation_defaults")
        data_actions = np.concatenate([ep.action for ep in episodes], axis=0)
        policy_cfg = policy_config_from(metadata, data_actions, file_cfg["policy"], args, extra)
        train_cfg = train_config_from(file_cfg["train"], args)

    info = distributed.init_from_env(train_cfg.device)
    try:
        hor = policy_cfg.horizon
        pad_after = train_cfg.pad_after if train_cfg.pad_after is not None else hor.T_a - 1
        dataset = WindowDataset(episodes, T_o=hor.T_o, T_p=hor.T_p, dt=hor.dt,
                                pad_after=min(pad_after, hor.T_p - 1), metadata=metadata,
                                state_names=policy_cfg.observation.state_names,
                                aux_state_names=policy_cfg.auxiliary.state_names)
        policy = GenerativePolicy.from_config(policy_cfg)
        trainer = Trainer(policy, dataset, train_cfg, out, info=info, resume=args.resume,
                          progress=args.progress, dump_weights_dir=args.debug_dump_weights,
                          extra_metadata=_model_metadata(args, metadata, len(dataset)))
        if info.is_main:
            n_params = sum(p.numel() for p in policy.parameters())
            where = f"resuming from {trainer.resumed_from}" if trainer.resumed_from else "fresh start"
            print(f"genpolicy train: {policy_cfg.kind}/{policy_cfg.network.name}, {n_params / 1e6:.2f} M params, "
                  f"{len(episodes)} episodes, {len(dataset)} windows, {train_cfg.steps} steps, "
                  f"{info.world_size} process(es) on {info.device}; {where}", file=sys.stderr)
        result = trainer.train(stop_after=args.stop_after)
        if info.is_main:
            last = f"{result.history[-1][1]:.4g}" if result.history else "n/a"
            if result.finished:
                print(f"genpolicy train: done, {result.step} steps, last loss {last}; model directory: {out}")
            else:
                print(f"genpolicy train: stopped at step {result.step} (loss {last}); checkpoint "
                      f"{result.checkpoint}; continue with --resume")
    finally:
        distributed.shutdown(info)
    return 130 if result.interrupted else 0


def _model_metadata(args, metadata, windows: int) -> dict:
    """``metadata`` of the model directory: the data set, its windows and the task trained on
    (``--task``, else the data set's; ``metadata.task``, which ``genpolicy eval`` uses)."""
    named = (getattr(args, "task_defaults", None) or {}).get("task")
    if named and metadata.task and named != metadata.task:
        raise ValueError(f"--task {named}: the data set {args.data} was recorded in task {metadata.task!r}")
    out = {"dataset": str(Path(args.data).resolve()), "windows": windows}
    if named or metadata.task:
        out["task"] = named or metadata.task
    return out


def _defaults_epilog() -> str:
    defaults = ", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(TrainConfig)
                         if f.default is not dataclasses.MISSING)
    return (f"TrainConfig defaults: {defaults}. Several processes: "
            "torchrun --nproc_per_node N -m genpolicy_ros.cli train ...")
