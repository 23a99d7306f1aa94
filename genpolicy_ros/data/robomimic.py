"""Read a robomimic HDF5 data set (``h5py``) into this package's episodes.

robomimic's documented layout::

    data                      attrs: total (frames), env_args (JSON: env_name, env_kwargs, ...)
    data/demo_N               attrs: num_samples
    data/demo_N/actions       [T, A]
    data/demo_N/obs/<key>     [T, ...]  low-dimensional ([T] or [T, d]) or images ([T, H, W, 3] uint8)
    data/demo_N/next_obs, rewards, dones, states     (not read)
    mask/<split>              names of the demos in a split (e.g. "train", "valid")

Mapping (printed by ``genpolicy train --robomimic``; :meth:`RobomimicMapping.describe`):

- actions = ``actions``; joint names ``action_<i>`` (or the names given).
- state = the chosen low-dimensional ``obs`` keys in the order given (default: every
  low-dimensional key, sorted), each flattened; names ``<key>`` for one value, else
  ``<key>_<i>``.
- cameras = the chosen image keys (default: all of them with ``images``); camera name =
  key without a trailing ``_image`` (``agentview_image`` → ``agentview``).
- Demos in numeric order (``demo_2`` before ``demo_10``), or only those in ``mask/<split>``.
- robomimic stores no time: row ``k`` is at ``k·dt`` with ``dt`` given, else
  ``1 / env_args.env_kwargs.control_freq`` when the file names one, else 0.05 s
  (robosuite's default 20 Hz).

Refused, each with a :class:`RobomimicFormatError` naming the file, key and problem: a
file that is not HDF5, no ``data`` group or no demos, object / variable-length /
string arrays where numbers belong (never converted, nothing unpickled), arrays of a
demo with different lengths, non-finite values, unknown keys or splits, image keys
that are not ``[T, H, W, 3]`` uint8.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .episodes import DatasetMetadata, Episode, EpisodeFormatError

DEMO_PATTERN = re.compile(r"^demo_(\d+)$")
DEFAULT_DT = 0.05  # robosuite's default control frequency, 20 Hz


class RobomimicFormatError(EpisodeFormatError):
    """A robomimic file this reader refuses (the message names file, key and problem)."""


@dataclass
class RobomimicMapping:
    """What a robomimic file became: printed so that a user sees every choice."""

    path: str
    dt: float
    dt_source: str
    joint_names: List[str]
    state_keys: List[Tuple[str, List[str]]]  # (obs key, state names it gives)
    cameras: Dict[str, str]  # camera name -> obs key
    demos: List[str] = field(default_factory=list)
    split: Optional[str] = None
    image_size: Optional[Tuple[int, int]] = None
    resized: bool = False
    frames: int = 0

    @property
    def state_names(self) -> List[str]:
        return [n for _, names in self.state_keys for n in names]

    def describe(self) -> str:
        which = f"mask/{self.split}" if self.split else "all demos"
        lines = [f"robomimic {self.path}: {len(self.demos)} demos ({which}), {self.frames} frames, "
                 f"dt {self.dt:.6g} s ({self.dt_source})",
                 f"  action  <- 'actions': joints {self.joint_names}"]
        lines += [f"  state   <- 'obs/{key}': {names}" for key, names in self.state_keys]
        for cam, key in self.cameras.items():
            size = f" ({self.image_size[0]}x{self.image_size[1]}{', resized' if self.resized else ''})" \
                if self.image_size else ""
            lines.append(f"  camera '{cam}' <- 'obs/{key}'{size}")
        return "\n".join(lines)


def _numeric(path, key: str, ds) -> None:
    """Refuse datasets that hold anything but plain numbers (object, vlen, strings, compounds)."""
    import h5py

    dtype = ds.dtype
    if dtype.kind == "O" or h5py.check_vlen_dtype(dtype) is not None or h5py.check_string_dtype(dtype) is not None:
        raise RobomimicFormatError(f"{path}: '{key}' holds object / variable-length / string data ({dtype}); "
                                   "only numeric arrays are read (nothing is converted or unpickled)")
    if dtype.kind not in "fiub":
        raise RobomimicFormatError(f"{path}: '{key}' must be a numeric array, got dtype {dtype}")


def _is_image(ds) -> bool:
    return ds.ndim == 4 and ds.shape[-1] == 3 and ds.dtype == np.uint8


def _demo_names(path, f, split: Optional[str]) -> List[str]:
    import h5py

    if "data" not in f or not isinstance(f["data"], h5py.Group):
        raise RobomimicFormatError(f"{path}: no 'data' group (not a robomimic data set)")
    demos = sorted((k for k in f["data"] if DEMO_PATTERN.match(k)), key=lambda k: int(k.split("_")[1]))
    if not demos:
        raise RobomimicFormatError(f"{path}: 'data' holds no demo_N groups (has {sorted(f['data'])[:10]})")
    if split is None:
        return demos
    splits = sorted(f["mask"]) if "mask" in f else []
    if split not in splits:
        raise RobomimicFormatError(f"{path}: no split 'mask/{split}' (splits: {splits})")
    ds = f["mask"][split]
    if h5py.check_string_dtype(ds.dtype) is None and ds.dtype.kind != "S":
        raise RobomimicFormatError(f"{path}: 'mask/{split}' must hold demo names (strings), got dtype {ds.dtype}")
    names = [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in np.asarray(ds[()]).reshape(-1)]
    unknown = [n for n in names if n not in f["data"]]
    if unknown:
        raise RobomimicFormatError(f"{path}: 'mask/{split}' names demos that are not in 'data': {unknown[:10]}")
    return sorted(names, key=lambda k: int(k.split("_")[1]) if DEMO_PATTERN.match(k) else 0)


def _dt(path, f, dt: Optional[float]) -> Tuple[float, str]:
    if dt is not None:
        if not (dt > 0 and np.isfinite(dt)):
            raise RobomimicFormatError(f"{path}: dt must be > 0 s, got {dt}")
        return float(dt), "given"
    raw = f["data"].attrs.get("env_args")
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="replace")
    if isinstance(raw, str):
        try:
            freq = json.loads(raw).get("env_kwargs", {}).get("control_freq")
        except (json.JSONDecodeError, AttributeError):
            freq = None
        if isinstance(freq, (int, float)) and not isinstance(freq, bool) and freq > 0:
            return 1.0 / float(freq), "data.attrs env_args control_freq"
    return DEFAULT_DT, "default; pass --dt"


def camera_name(key: str) -> str:
    return key[: -len("_image")] if key.endswith("_image") and len(key) > len("_image") else key


def read_robomimic(path, obs_keys: Optional[Sequence[str]] = None, images: bool = False,
                   image_size: Optional[Tuple[int, int]] = None, split: Optional[str] = None,
                   dt: Optional[float] = None, action_names: Optional[Sequence[str]] = None,
                   image_fit: str = "resize") -> Tuple[DatasetMetadata, List[Episode], RobomimicMapping]:
    """Episodes of the robomimic file ``path`` (mapping in the module docstring)."""
    import h5py

    from .video import resize_rgb

    path = Path(path)
    if not path.is_file():
        raise RobomimicFormatError(f"{path}: no such file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise RobomimicFormatError(f"{path}: not a readable HDF5 file ({exc})") from None
    with f:
        demos = _demo_names(path, f, split)
        step, dt_source = _dt(path, f, dt)
        first = f["data"][demos[0]]
        if "obs" not in first or "actions" not in first:
            raise RobomimicFormatError(f"{path}: 'data/{demos[0]}' needs 'obs' and 'actions' (has {sorted(first)})")
        available = {k: first["obs"][k] for k in first["obs"]}
        for key, ds in available.items():
            if not isinstance(ds, h5py.Dataset):
                raise RobomimicFormatError(f"{path}: 'data/{demos[0]}/obs/{key}' is a group, not an array")
        low_dim = sorted(k for k, ds in available.items() if ds.dtype.kind in "fiub" and ds.ndim in (1, 2))
        image_keys = sorted(k for k, ds in available.items() if _is_image(ds))
        by_camera = {camera_name(k): k for k in image_keys}
        if obs_keys is None:
            state_keys, cams = low_dim, (image_keys if images else [])
        else:
            state_keys, cams = [], []
            for key in obs_keys:
                if key in image_keys or key in by_camera:
                    cams.append(by_camera.get(key, key))
                elif key in available:
                    ds = available[key]
                    _numeric(path, f"data/{demos[0]}/obs/{key}", ds)
                    if ds.ndim not in (1, 2):
                        raise RobomimicFormatError(
                            f"{path}: 'data/{demos[0]}/obs/{key}' has shape {ds.shape}: neither low-dimensional "
                            "([T] or [T, d]) nor an RGB image ([T, H, W, 3] uint8)")
                    state_keys.append(key)
                else:
                    raise RobomimicFormatError(f"{path}: no obs key {key!r} in 'data/{demos[0]}/obs' "
                                               f"(low-dimensional: {low_dim}; images: {image_keys})")
        if not state_keys and not cams:
            raise RobomimicFormatError(f"{path}: nothing to observe (no low-dimensional obs key chosen and no "
                                       "image key; pass --obs-keys or --images)")
        widths = {k: int(np.prod(available[k].shape[1:])) for k in state_keys}
        named = [(k, [k] if widths[k] == 1 else [f"{k}_{i}" for i in range(widths[k])]) for k in state_keys]
        actions0 = first["actions"]
        _numeric(path, f"data/{demos[0]}/actions", actions0)
        action_dim = int(np.prod(actions0.shape[1:]))
        joints = list(action_names) if action_names else [f"action_{i}" for i in range(action_dim)]
        if len(joints) != action_dim:
            raise RobomimicFormatError(f"{path}: {len(joints)} action names given for {action_dim}-dimensional "
                                       "actions")
        mapping = RobomimicMapping(path=str(path), dt=step, dt_source=dt_source, joint_names=joints,
                                   state_keys=named, cameras={camera_name(k): k for k in cams}, demos=demos,
                                   split=split, image_size=tuple(image_size) if image_size else None,
                                   resized=bool(image_size))
        episodes, sizes = [], {}
        for demo in demos:
            group = f["data"][demo]
            where = f"data/{demo}"
            arrays = {}
            for key in ["actions"] + [f"obs/{k}" for k in state_keys] + [f"obs/{k}" for k in cams]:
                if key not in group:
                    raise RobomimicFormatError(f"{path}: '{where}/{key}' missing")
                ds = group[key]
                _numeric(path, f"{where}/{key}", ds)
                arrays[key] = ds[()]
            n = arrays["actions"].shape[0]
            for key, arr in arrays.items():
                if arr.shape[0] != n:
                    raise RobomimicFormatError(f"{path}: '{where}/{key}' has {arr.shape[0]} rows but "
                                               f"'{where}/actions' has {n}")
            declared = group.attrs.get("num_samples")
            if declared is not None and int(declared) != n:
                raise RobomimicFormatError(f"{path}: '{where}' attrs num_samples = {int(declared)} but it holds "
                                           f"{n} rows")
            state = np.concatenate([arrays[f"obs/{k}"].reshape(n, -1) for k in state_keys], axis=1) \
                if state_keys else np.zeros((n, 0))  # [n, D_s]
            cam_frames = {}
            for cam, key in mapping.cameras.items():
                frames = arrays[f"obs/{key}"]  # [n, H, W, 3] uint8
                if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
                    raise RobomimicFormatError(f"{path}: '{where}/obs/{key}' must be [T, H, W, 3] uint8, got "
                                               f"{frames.shape} {frames.dtype}")
                if image_size is not None:
                    frames = np.stack([resize_rgb(im, image_size, image_fit) for im in frames])
                cam_frames[cam] = frames
                sizes.setdefault(cam, tuple(frames.shape[1:3]))
                if tuple(frames.shape[1:3]) != sizes[cam]:
                    raise RobomimicFormatError(f"{path}: '{where}/obs/{key}' frames are {frames.shape[1:3]}, "
                                               f"earlier demos {sizes[cam]}; pass --image-size HxW")
            episodes.append((demo, Episode(timestamp=np.arange(n) * step,  # [n] s
                                           action=arrays["actions"].reshape(n, -1), state=state,
                                           images=cam_frames)))
        env_name = _env_name(f)
    if len(set(sizes.values())) > 1:
        raise RobomimicFormatError(f"{path}: cameras differ in size {sizes}; a policy needs one size: pass "
                                   "--image-size HxW")
    if sizes and image_size is None:
        mapping.image_size = next(iter(sizes.values()))
    meta = DatasetMetadata(joint_names=joints, state_names=mapping.state_names, dt=step,
                           cameras={cam: list(size) for cam, size in sizes.items()},
                           units={"timestamp": "s"},
                           description=f"converted from robomimic {path} (env {env_name!r})",
                           image_preprocess=image_fit)
    out = [ep.validate(meta, where=f"{path} ('data/{demo}')") for demo, ep in episodes]
    mapping.frames = int(sum(len(e) for e in out))
    return meta, out, mapping


def _env_name(f) -> Optional[str]:
    raw = f["data"].attrs.get("env_args")
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="replace")
    try:
        return json.loads(raw).get("env_name") if isinstance(raw, str) else None
    except (json.JSONDecodeError, AttributeError):
        return None
