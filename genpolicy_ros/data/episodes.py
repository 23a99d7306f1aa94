"""On-disk episode format: one directory per data set, one ``.npz`` file per episode.

Layout (format version 1)::

    my_dataset/
      dataset.json            # DatasetMetadata (below), UTF-8 JSON
      episode_000000.npz      # one demonstration each, numbered from 0
      episode_000001.npz
      ...

``dataset.json`` holds::

    {"format_version": 1,
     "joint_names":  ["shoulder", "elbow"],     # action dims, in the model's joint order
     "state_names":  ["shoulder", "elbow"],     # low-dim observation dims
     "cameras":      {"front": [96, 96]},       # name -> [height, width]; {} = no images
     "dt":           0.1,                       # nominal sample period, seconds
     "units":        {"timestamp": "s", "action": "rad", "state": "rad"},
     "joint_lower_limits": [...] | null,        # optional, robot units
     "joint_upper_limits": [...] | null,
     "description":  "free text",
     "state_inputs": {"target": {"type": "point", "names": ["target_x", "target_y"]}},  # optional
     "task":         "reach"}                   # optional: the registered task that produced it

Each ``episode_XXXXXX.npz`` (written by ``numpy.savez_compressed``) holds the arrays

=====================  ===================  =============================================
key                    shape / dtype        meaning
=====================  ===================  =============================================
``timestamp``          [N] float64          seconds, strictly increasing, any origin
``action``             [N, D_a] float32     absolute joint position targets at each stamp
``state``              [N, D_s] float32     proprioception observed at each stamp
``image.<camera>``     [N, H, W, 3] uint8   RGB frame per stamp (one key per camera)
=====================  ===================  =============================================

Rules checked on read and write (each violation is a :class:`EpisodeFormatError` naming
the file, key and problem): all arrays have the same length ``N >= 1``; timestamps are
finite and strictly increasing; actions and states are finite; dims match
``len(joint_names)`` / ``len(state_names)``; one image array per metadata camera with the
metadata's ``H, W``; no unknown keys. Files are read with ``np.load(allow_pickle=False)``
only: an object array (which would need unpickling) is rejected, never executed.

Row ``i`` pairs the observation taken at ``timestamp[i]`` with the action commanded at
that instant (the alignment of ``docs/internals.md``: row i of a chunk is due at
``t0 + i·dt``). Stamps need not be exactly uniform; :mod:`genpolicy_ros.data.dataset`
aligns windows by time.
"""
from __future__ import annotations

import json
import math
import os
import re
import tempfile
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np

from ..core.json_file import read_json_object

FORMAT_VERSION = 1
METADATA_FILE = "dataset.json"
EPISODE_PATTERN = re.compile(r"^episode_(\d{6,})\.npz$")
IMAGE_PREFIX = "image."


class EpisodeFormatError(ValueError):
    """A data set or episode file that violates the documented format."""


# --------------------------------------------------------------------------- metadata
@dataclass
class DatasetMetadata:
    """Contents of ``dataset.json``; validated on construction."""

    joint_names: List[str]
    state_names: List[str]
    dt: float
    cameras: Dict[str, List[int]] = field(default_factory=dict)  # name -> [H, W]
    units: Dict[str, str] = field(
        default_factory=lambda: {"timestamp": "s", "action": "rad", "state": "rad"}
    )
    joint_lower_limits: Optional[List[float]] = None
    joint_upper_limits: Optional[List[float]] = None
    description: str = ""
    # State entries that are not joints, by the input (ROS topic) they come from:
    # {input: {"type": "point"|"pose", "names": [...]}} (core.config.STATE_INPUT_TYPES).
    state_inputs: Dict[str, dict] = field(default_factory=dict)
    task: str = ""  # the registered task (genpolicy_ros.tasks) that produced the data, "" = none
    # How frames were brought to the cameras' sizes (runtime/images.py): "resize" or
    # "center_crop_resize"; a model trained on the data records it (observation.image_preprocess).
    image_preprocess: str = "resize"
    format_version: int = FORMAT_VERSION

    def __post_init__(self):
        self.joint_names = _name_list("joint_names", self.joint_names, allow_empty=False)
        self.state_names = _name_list("state_names", self.state_names, allow_empty=True)
        if isinstance(self.dt, bool) or not isinstance(self.dt, (int, float)):
            raise EpisodeFormatError(f"dataset.json: dt must be a number (seconds), got {self.dt!r}")
        self.dt = float(self.dt)
        if not (math.isfinite(self.dt) and self.dt > 0):
            raise EpisodeFormatError(f"dataset.json: dt must be finite and > 0 s, got {self.dt}")
        if not isinstance(self.cameras, dict):
            raise EpisodeFormatError(
                f"dataset.json: cameras must map name -> [height, width], got {type(self.cameras).__name__}"
            )
        cams = {}
        for name, size in self.cameras.items():
            if not isinstance(name, str) or not name or "/" in name:
                raise EpisodeFormatError(f"dataset.json: bad camera name {name!r}")
            if (
                not isinstance(size, (list, tuple))
                or len(size) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
            ):
                raise EpisodeFormatError(
                    f"dataset.json: cameras[{name!r}] must be [height, width] positive ints, got {size!r}"
                )
            cams[name] = [int(size[0]), int(size[1])]
        self.cameras = cams
        if not isinstance(self.units, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.units.items()
        ):
            raise EpisodeFormatError(f"dataset.json: units must map str -> str, got {self.units!r}")
        for key in ("joint_lower_limits", "joint_upper_limits"):
            value = getattr(self, key)
            if value is None:
                continue
            arr = np.asarray(value, dtype=np.float64)
            if arr.shape != (len(self.joint_names),) or not np.all(np.isfinite(arr)):
                raise EpisodeFormatError(
                    f"dataset.json: {key} must be {len(self.joint_names)} finite numbers "
                    f"(one per joint), got {value!r}"
                )
            setattr(self, key, [float(v) for v in arr])
        if (self.joint_lower_limits is None) != (self.joint_upper_limits is None):
            raise EpisodeFormatError(
                "dataset.json: give both joint_lower_limits and joint_upper_limits, or neither"
            )
        if self.joint_lower_limits is not None and any(
            lo > hi for lo, hi in zip(self.joint_lower_limits, self.joint_upper_limits)
        ):
            raise EpisodeFormatError("dataset.json: joint_lower_limits must be <= joint_upper_limits")
        if not isinstance(self.description, str):
            raise EpisodeFormatError("dataset.json: description must be a string")
        if not isinstance(self.task, str):
            raise EpisodeFormatError(f"dataset.json: task must be a string, got {self.task!r}")
        if self.image_preprocess not in ("resize", "center_crop_resize"):
            raise EpisodeFormatError("dataset.json: image_preprocess must be resize or center_crop_resize, got "
                                     f"{self.image_preprocess!r}")
        from ..core.config import check_state_inputs  # plain Python: no torch

        try:
            self.state_inputs = check_state_inputs(self.state_inputs, self.state_names, "dataset.json: state_inputs")
        except ValueError as exc:
            raise EpisodeFormatError(str(exc)) from None
        if self.format_version != FORMAT_VERSION:
            raise EpisodeFormatError(
                f"dataset.json: format_version {self.format_version!r} is not supported "
                f"(this genpolicy_ros reads version {FORMAT_VERSION})"
            )

    @property
    def action_dim(self) -> int:
        return len(self.joint_names)

    @property
    def state_dim(self) -> int:
        return len(self.state_names)

    @property
    def camera_names(self) -> List[str]:
        return list(self.cameras)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "DatasetMetadata":
        if not isinstance(data, dict):
            raise EpisodeFormatError(f"dataset.json: expected a JSON object, got {type(data).__name__}")
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise EpisodeFormatError(f"dataset.json: unknown keys {unknown} (known: {sorted(known)})")
        missing = sorted(k for k in ("joint_names", "state_names", "dt") if k not in data)
        if missing:
            raise EpisodeFormatError(f"dataset.json: missing required keys {missing}")
        return cls(**data)

    def save(self, root) -> Path:
        path = Path(root) / METADATA_FILE
        _atomic_write_bytes(path, (json.dumps(self.to_dict(), indent=2) + "\n").encode("utf-8"))
        return path

    @classmethod
    def load(cls, root) -> "DatasetMetadata":
        path = Path(root) / METADATA_FILE
        data = read_json_object(path, EpisodeFormatError, f"an episode data set needs a {METADATA_FILE}")
        try:
            return cls.from_dict(data)
        except TypeError as exc:  # wrong argument types in the dataclass constructor
            raise EpisodeFormatError(f"{path}: {exc}") from None


def _name_list(key: str, value, allow_empty: bool) -> List[str]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise EpisodeFormatError(f"dataset.json: {key} must be a list of non-empty strings, got {value!r}")
    if not value and not allow_empty:
        raise EpisodeFormatError(f"dataset.json: {key} must not be empty")
    if len(set(value)) != len(value):
        raise EpisodeFormatError(f"dataset.json: {key} has duplicates: {list(value)}")
    return list(value)


# --------------------------------------------------------------------------- episodes
@dataclass
class Episode:
    """One demonstration in memory. Shapes: N samples, D_a actions, D_s states."""

    timestamp: np.ndarray  # [N] float64, seconds
    action: np.ndarray  # [N, D_a] float32
    state: np.ndarray  # [N, D_s] float32
    images: Dict[str, np.ndarray] = field(default_factory=dict)  # camera -> [N, H, W, 3] uint8

    def __len__(self) -> int:
        return int(self.timestamp.shape[0])

    def validate(self, metadata: Optional[DatasetMetadata] = None, where: str = "episode") -> "Episode":
        """Check the format rules (module docstring); convert float dtypes; return self."""
        self.timestamp = _float_array(where, "timestamp", self.timestamp, np.float64, ndim=1)
        self.action = _float_array(where, "action", self.action, np.float32, ndim=2)
        self.state = _float_array(where, "state", self.state, np.float32, ndim=2)
        n = self.timestamp.shape[0]
        if n < 1:
            raise EpisodeFormatError(f"{where}: empty episode (timestamp has 0 samples)")
        for key, arr in (("action", self.action), ("state", self.state)):
            if arr.shape[0] != n:
                raise EpisodeFormatError(
                    f"{where}: ragged episode: '{key}' has {arr.shape[0]} rows but 'timestamp' has {n}"
                )
        if not np.all(np.isfinite(self.timestamp)):
            bad = int(np.flatnonzero(~np.isfinite(self.timestamp))[0])
            raise EpisodeFormatError(f"{where}: timestamp[{bad}] is not finite ({self.timestamp[bad]})")
        steps = np.diff(self.timestamp)
        if np.any(steps <= 0):
            bad = int(np.flatnonzero(steps <= 0)[0])
            raise EpisodeFormatError(
                f"{where}: timestamps must be strictly increasing, but timestamp[{bad + 1}] = "
                f"{self.timestamp[bad + 1]!r} <= timestamp[{bad}] = {self.timestamp[bad]!r}"
            )
        for key, arr in (("action", self.action), ("state", self.state)):
            if not np.all(np.isfinite(arr)):
                row = int(np.flatnonzero(~np.all(np.isfinite(arr), axis=1))[0])
                raise EpisodeFormatError(f"{where}: '{key}' row {row} has a non-finite value: {arr[row]}")
        if not isinstance(self.images, dict):
            raise EpisodeFormatError(f"{where}: images must be a dict camera -> array")
        for cam, img in self.images.items():
            key = IMAGE_PREFIX + cam
            img = np.asarray(img)
            if img.dtype != np.uint8:
                raise EpisodeFormatError(f"{where}: '{key}' must be uint8, got {img.dtype}")
            if img.ndim != 4 or img.shape[3] != 3:
                raise EpisodeFormatError(f"{where}: '{key}' must be [N, H, W, 3] RGB, got shape {img.shape}")
            if img.shape[0] != n:
                raise EpisodeFormatError(
                    f"{where}: ragged episode: '{key}' has {img.shape[0]} frames but 'timestamp' has {n}"
                )
            self.images[cam] = img
        if metadata is not None:
            self._check_against(metadata, where)
        return self

    def _check_against(self, meta: DatasetMetadata, where: str) -> None:
        if self.action.shape[1] != meta.action_dim:
            raise EpisodeFormatError(
                f"{where}: 'action' has {self.action.shape[1]} dims but dataset.json names "
                f"{meta.action_dim} joints {meta.joint_names}"
            )
        if self.state.shape[1] != meta.state_dim:
            raise EpisodeFormatError(
                f"{where}: 'state' has {self.state.shape[1]} dims but dataset.json names "
                f"{meta.state_dim} states {meta.state_names}"
            )
        if set(self.images) != set(meta.cameras):
            raise EpisodeFormatError(
                f"{where}: cameras {sorted(self.images)} differ from dataset.json cameras {sorted(meta.cameras)}"
            )
        for cam, (h, w) in meta.cameras.items():
            got = self.images[cam].shape[1:3]
            if tuple(got) != (h, w):
                raise EpisodeFormatError(
                    f"{where}: '{IMAGE_PREFIX}{cam}' frames are {got[0]}x{got[1]} (HxW) but dataset.json "
                    f"says {h}x{w}"
                )


def _float_array(where: str, key: str, value, dtype, ndim: int) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype == object:
        raise EpisodeFormatError(f"{where}: '{key}' is an object array; numeric arrays only")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise EpisodeFormatError(f"{where}: '{key}' must be numeric (float), got dtype {arr.dtype}")
    if arr.ndim != ndim:
        want = "[N]" if ndim == 1 else "[N, D]"
        raise EpisodeFormatError(f"{where}: '{key}' must have shape {want}, got {arr.shape}")
    return np.ascontiguousarray(arr, dtype=dtype)


def episode_filename(index: int) -> str:
    if not isinstance(index, int) or index < 0:
        raise ValueError(f"episode index must be a non-negative int, got {index!r}")
    return f"episode_{index:06d}.npz"


def write_episode(path, episode: Episode, metadata: Optional[DatasetMetadata] = None, compress: bool = True) -> Path:
    """Validate ``episode`` and write it to ``path`` (a ``.npz`` file) atomically."""
    path = Path(path)
    episode.validate(metadata, where=str(path))
    arrays = {"timestamp": episode.timestamp, "action": episode.action, "state": episode.state}
    for cam, img in episode.images.items():
        arrays[IMAGE_PREFIX + cam] = img
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", suffix=".npz", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            (np.savez_compressed if compress else np.savez)(fh, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def read_episode(path, metadata: Optional[DatasetMetadata] = None) -> Episode:
    """Read and validate one episode file. Never unpickles (``allow_pickle=False``)."""
    path = Path(path)
    if not path.is_file():
        raise EpisodeFormatError(f"{path}: no such episode file")
    arrays = {}
    try:
        with np.load(path, allow_pickle=False) as npz:
            if not hasattr(npz, "files"):
                raise EpisodeFormatError(f"{path}: not an .npz archive (a bare .npy array)")
            for key in npz.files:
                try:
                    arrays[key] = npz[key]
                except ValueError as exc:
                    if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
                        raise EpisodeFormatError(
                            f"{path}: '{key}' is an object array, which would need unpickling; "
                            "refused (episodes hold numeric arrays only)"
                        ) from None
                    raise EpisodeFormatError(f"{path}: '{key}' is unreadable ({exc})") from None
    except EpisodeFormatError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        # np.load raises ValueError for pickled files when allow_pickle=False.
        raise EpisodeFormatError(f"{path}: not a readable .npz episode ({exc})") from None
    missing = [k for k in ("timestamp", "action", "state") if k not in arrays]
    if missing:
        raise EpisodeFormatError(f"{path}: missing required arrays {missing} (has {sorted(arrays)})")
    images = {}
    for key in sorted(arrays):
        if key in ("timestamp", "action", "state"):
            continue
        if key.startswith(IMAGE_PREFIX) and len(key) > len(IMAGE_PREFIX):
            images[key[len(IMAGE_PREFIX):]] = arrays[key]
        else:
            raise EpisodeFormatError(
                f"{path}: unknown array '{key}' (allowed: timestamp, action, state, image.<camera>)"
            )
    episode = Episode(arrays["timestamp"], arrays["action"], arrays["state"], images)
    return episode.validate(metadata, where=str(path))


# --------------------------------------------------------------------------- data set
class EpisodeDataset:
    """A data set directory: :class:`DatasetMetadata` plus numbered episode files.

    ``EpisodeDataset.create(root, metadata)`` starts a new (empty) one;
    ``EpisodeDataset(root)`` opens an existing one. Episodes are read lazily by index.
    """

    def __init__(self, root):
        self.root = Path(root)
        if not self.root.is_dir():
            raise EpisodeFormatError(f"{self.root}: not a directory (expected an episode data set)")
        self.metadata = DatasetMetadata.load(self.root)

    @classmethod
    def create(cls, root, metadata: DatasetMetadata, exist_ok: bool = False) -> "EpisodeDataset":
        root = Path(root)
        if (root / METADATA_FILE).exists() and not exist_ok:
            raise FileExistsError(f"{root / METADATA_FILE} already exists")
        root.mkdir(parents=True, exist_ok=True)
        metadata.save(root)
        return cls(root)

    def episode_paths(self) -> List[Path]:
        found = []
        for p in self.root.iterdir():
            m = EPISODE_PATTERN.match(p.name)
            if m and p.is_file():
                found.append((int(m.group(1)), p))
        return [p for _, p in sorted(found)]

    def __len__(self) -> int:
        return len(self.episode_paths())

    def __getitem__(self, index: int) -> Episode:
        paths = self.episode_paths()
        return read_episode(paths[index], self.metadata)

    def __iter__(self) -> Iterator[Episode]:
        for p in self.episode_paths():
            yield read_episode(p, self.metadata)

    def append(self, episode: Episode, compress: bool = True) -> Path:
        """Write ``episode`` as the next numbered file and return its path."""
        paths = self.episode_paths()
        index = int(EPISODE_PATTERN.match(paths[-1].name).group(1)) + 1 if paths else 0
        return write_episode(self.root / episode_filename(index), episode, self.metadata, compress=compress)


def write_dataset(root, metadata: DatasetMetadata, episodes: Sequence[Episode],
                  compress: bool = True) -> EpisodeDataset:
    """Create a data set at ``root`` holding ``episodes`` (numbered from 0)."""
    ds = EpisodeDataset.create(root, metadata)
    for ep in episodes:
        ds.append(ep, compress=compress)
    return ds


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
