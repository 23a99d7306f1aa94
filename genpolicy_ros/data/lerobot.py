"""Read a local LeRobotDataset (format v3.0) into this package's episodes.

Read with ``pyarrow`` (parquet) and PyAV (:mod:`.video`), not with the ``lerobot``
package (its pinned torch/torchvision would replace ours; see ``docs/data.md``). A data set
directory, as LeRobot ≥ 0.4 writes it (no hub access: everything must be on disk)::

    meta/info.json                         codebase_version "v3.0", fps, features, path templates
    meta/episodes/chunk-XXX/file-XXX.parquet   one row per episode (lengths, video file + offset)
    meta/tasks.parquet, meta/stats.json    (not needed for reading)
    data/chunk-XXX/file-XXX.parquet        one row per frame: episode_index, frame_index,
                                           timestamp (s from the episode start), action, observation.*
    videos/<feature key>/chunk-XXX/file-XXX.mp4   frames of many episodes back to back

Mapping (printed by ``genpolicy train --lerobot``; :meth:`LeRobotMapping.describe`):

- actions = feature ``action``; joint names = its ``names``.
- state = the chosen low-dimensional ``observation.*`` features (default
  ``observation.state``, else every low-dimensional one), concatenated in the order given.
- cameras = the chosen ``video``/``image`` features; camera name = key without
  ``observation.images.`` (else without ``observation.``). Video frames are decoded at
  ``from_timestamp + timestamp`` of each row (nearest frame, within 0.4 frame periods).
- ``dt = 1 / fps``; episodes = runs of ``episode_index``, rows ordered by ``frame_index``.
- Names: a feature's ``names`` list (or a dict holding one such list, as older LeRobot
  writes ``{"motors": [...]}``) when it has one name per element; otherwise
  ``<key>_<i>`` (key without ``observation.``). Names used by two chosen state features
  are prefixed ``<key>.``.
- ``meta/genpolicy_ros.json`` (written by :mod:`.lerobot_write`, ignored by LeRobot) adds
  joint limits, units and the description when its joint names match.

Refused, each with a :class:`LeRobotFormatError` naming the file, key and problem:
a format other than v3.x (v2.1: LeRobot's converter upgrades it), missing files or
columns, null or ragged values, non-numeric state/action columns, columns whose parquet
metadata declares a pickled Python extension type (``arrow.py_extension_type``, never
unpickled), depth-map videos, images stored only as paths, frames missing from a video.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..core.json_file import read_json_object
from .episodes import DatasetMetadata, Episode, EpisodeFormatError

INFO_FILE = "meta/info.json"
EPISODES_DIR = "meta/episodes"
DATA_DIR = "data"
SIDECAR_FILE = "meta/genpolicy_ros.json"  # ours; LeRobot ignores unknown files under meta/
SUPPORTED_MAJOR = 3
IMAGE_DTYPES = ("video", "image")
INDEX_COLUMNS = ("timestamp", "frame_index", "episode_index", "index", "task_index")
PICKLED_EXTENSION = b"arrow.py_extension_type"
FRAME_TOLERANCE = 0.4  # of a frame period: the nearest video frame must be this close


class LeRobotFormatError(EpisodeFormatError):
    """A LeRobotDataset this reader refuses (the message names file, key and problem)."""


# --------------------------------------------------------------------------- info.json
def read_info(root) -> dict:
    """``meta/info.json`` of a v3 data set, checked for what this reader relies on."""
    root = Path(root)
    path = root / INFO_FILE
    info = read_json_object(path, LeRobotFormatError, "not a LeRobotDataset directory")
    version = str(info.get("codebase_version", ""))
    major = version.lstrip("v").split(".")[0]
    if not major.isdigit() or int(major) != SUPPORTED_MAJOR:
        raise LeRobotFormatError(
            f"{path}: codebase_version {version!r} is not supported (this reader reads v3.x; upgrade a v2.1 "
            "data set with LeRobot's converter: python -m lerobot.datasets.v30.convert_dataset_v21_to_v30)")
    fps = info.get("fps")
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not (math.isfinite(fps) and fps > 0):
        raise LeRobotFormatError(f"{path}: 'fps' must be a positive number, got {fps!r}")
    features = info.get("features")
    if not isinstance(features, dict) or not features:
        raise LeRobotFormatError(f"{path}: 'features' must be a non-empty object")
    for key, ft in features.items():
        if not isinstance(ft, dict) or not isinstance(ft.get("dtype"), str) \
                or not isinstance(ft.get("shape"), (list, tuple)) \
                or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in ft["shape"]):
            raise LeRobotFormatError(f"{path}: features[{key!r}] needs a 'dtype' string and a 'shape' list of "
                                     f"non-negative ints, got {ft!r}")
    if "action" not in features:
        raise LeRobotFormatError(f"{path}: no 'action' feature (features: {sorted(features)})")
    for key in ("data_path",):
        if not isinstance(info.get(key), str):
            raise LeRobotFormatError(f"{path}: '{key}' must be a path template string")
    return info


def camera_name(key: str) -> str:
    for prefix in ("observation.images.", "observation."):
        if key.startswith(prefix) and len(key) > len(prefix):
            return key[len(prefix):]
    return key


def _short(key: str) -> str:
    return key[len("observation."):] if key.startswith("observation.") and key != "observation." else key


def feature_names(key: str, feature: dict) -> List[str]:
    """Per-element names of a low-dimensional feature (rule in the module docstring)."""
    width = int(np.prod(feature["shape"])) if feature["shape"] else 1
    names = feature.get("names")
    if isinstance(names, dict) and len(names) == 1:
        names = next(iter(names.values()))
    if isinstance(names, (list, tuple)) and len(names) == width and all(isinstance(n, str) and n for n in names) \
            and len(set(names)) == width:
        return list(names)
    return [f"{_short(key)}_{i}" for i in range(width)]


# --------------------------------------------------------------------------- mapping
@dataclass
class LeRobotMapping:
    """What a LeRobotDataset became: printed so that a user sees every choice."""

    root: str
    fps: float
    joint_names: List[str]
    state_features: List[Tuple[str, List[str]]]  # (feature key, state names it gives)
    cameras: Dict[str, str]  # camera name -> feature key
    image_size: Optional[Tuple[int, int]] = None  # (H, W) of every camera
    resized: bool = False  # image_size was asked for (frames resized to it)
    episodes: int = 0
    frames: int = 0
    notes: List[str] = field(default_factory=list)

    @property
    def dt(self) -> float:
        return 1.0 / self.fps

    @property
    def state_names(self) -> List[str]:
        return [n for _, names in self.state_features for n in names]

    def describe(self) -> str:
        lines = [f"LeRobotDataset {self.root}: {self.episodes} episodes, {self.frames} frames, "
                 f"fps {self.fps:g} -> dt {self.dt:.6g} s",
                 f"  action  <- 'action': joints {self.joint_names}"]
        for key, names in self.state_features:
            lines.append(f"  state   <- '{key}': {names}")
        for cam, key in self.cameras.items():
            size = f" ({self.image_size[0]}x{self.image_size[1]}{', resized' if self.resized else ''})" \
                if self.image_size else ""
            lines.append(f"  camera '{cam}' <- '{key}'{size}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def plan_mapping(root, info: dict, obs_keys: Optional[Sequence[str]] = None, images: bool = False,
                 image_size: Optional[Tuple[int, int]] = None) -> LeRobotMapping:
    """Choose the state features and cameras (see module docstring)."""
    where = Path(root) / INFO_FILE
    features = info["features"]
    low_dim = [k for k, ft in features.items() if k.startswith("observation.") and ft["dtype"] not in IMAGE_DTYPES
               and ft["dtype"] not in ("string", "bool") and k not in INDEX_COLUMNS]
    image_keys = [k for k, ft in features.items() if ft["dtype"] in IMAGE_DTYPES]
    by_camera = {camera_name(k): k for k in image_keys}
    if obs_keys is None:
        state_keys = ["observation.state"] if "observation.state" in low_dim else low_dim
        cams = list(image_keys) if images else []
    else:
        state_keys, cams = [], []
        for key in obs_keys:
            if key in image_keys or key in by_camera:
                cams.append(by_camera.get(key, key))
            elif key in features and features[key]["dtype"] not in IMAGE_DTYPES:
                if key in INDEX_COLUMNS or key == "action" or features[key]["dtype"] == "string":
                    raise LeRobotFormatError(f"{where}: feature {key!r} ({features[key]['dtype']}) cannot be an "
                                             "observation")
                state_keys.append(key)
            else:
                raise LeRobotFormatError(f"{where}: no feature {key!r} (observation features: {low_dim}; "
                                         f"cameras: {sorted(by_camera)})")
    if not state_keys and not cams:
        raise LeRobotFormatError(f"{where}: nothing to observe: no low-dimensional observation.* feature was "
                                 "chosen and no camera (pass --obs-keys or --images)")
    named = [(k, feature_names(k, features[k])) for k in state_keys]
    counts: Dict[str, int] = {}
    for _, names in named:
        for n in names:
            counts[n] = counts.get(n, 0) + 1
    named = [(k, [f"{_short(k)}.{n}" for n in names] if any(counts[n] > 1 for n in names) else names)
             for k, names in named]
    action_names = feature_names("action", features["action"])
    notes = []
    if action_names[0] == "action_0":
        notes.append("'action' has no per-joint names in info.json; joints are named action_<i>")
    for key in cams:
        info_v = features[key].get("info") or {}
        if info_v.get("video.is_depth_map"):
            raise LeRobotFormatError(f"{where}: camera feature {key!r} is a depth map; only RGB cameras are read")
    return LeRobotMapping(root=str(root), fps=float(info["fps"]), joint_names=action_names, state_features=named,
                          cameras={camera_name(k): k for k in cams},
                          image_size=tuple(image_size) if image_size else None, resized=bool(image_size),
                          notes=notes)


# --------------------------------------------------------------------------- parquet
def check_parquet_schema(path, schema) -> None:
    """Refuse columns declaring a pickled Python extension type (never unpickled)."""
    for f in schema:
        meta = f.metadata or {}
        ext = meta.get(b"ARROW:extension:name")
        type_name = getattr(f.type, "extension_name", None)
        if ext == PICKLED_EXTENSION or type_name == PICKLED_EXTENSION.decode():
            raise LeRobotFormatError(f"{path}: column '{f.name}' declares a pickled Python extension type "
                                     "(arrow.py_extension_type); refused, never unpickled")


def read_parquet(path, columns: Optional[Sequence[str]] = None):
    """A pyarrow Table of ``columns`` from ``path`` (schema checked, columns must exist)."""
    import pyarrow.parquet as pq

    path = Path(path)
    try:
        schema = pq.read_schema(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several classes for bad files
        raise LeRobotFormatError(f"{path}: not a readable parquet file ({exc})") from None
    check_parquet_schema(path, schema)
    if columns is not None:
        missing = [c for c in columns if c not in schema.names]
        if missing:
            raise LeRobotFormatError(f"{path}: missing columns {missing} (has {schema.names})")
    try:
        return pq.read_table(path, columns=list(columns) if columns is not None else None)
    except Exception as exc:  # noqa: BLE001
        raise LeRobotFormatError(f"{path}: unreadable parquet data ({exc})") from None


def column_matrix(table, key: str, width: int, where) -> np.ndarray:
    """Column ``key`` as ``[rows, width]`` float64 (scalar or list columns; no nulls, no ragged rows)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    col = table.column(key).combine_chunks()
    if col.null_count:
        raise LeRobotFormatError(f"{where}: column '{key}' has {col.null_count} null values")
    t = col.type
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False)  # [rows]
        if lengths.size and (lengths.min() != width or lengths.max() != width):
            bad = int(np.flatnonzero(lengths != width)[0])
            raise LeRobotFormatError(f"{where}: column '{key}' row {bad} has {lengths[bad]} values, "
                                     f"info.json says {width}")
        values = col.flatten()
        if values.null_count:
            raise LeRobotFormatError(f"{where}: column '{key}' has null elements")
        t = values.type
        data = values
    else:
        if width != 1:
            raise LeRobotFormatError(f"{where}: column '{key}' holds scalars but info.json says {width} values")
        data = col
    if not (pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_boolean(t)):
        raise LeRobotFormatError(f"{where}: column '{key}' must be numeric, got {t}")
    return np.asarray(data.to_numpy(zero_copy_only=False), dtype=np.float64).reshape(-1, width)


def _decode_image_column(table, key: str, where, size, fit: str = "resize") -> np.ndarray:
    """An ``image`` feature (struct of PNG/JPEG ``bytes`` + ``path``) → [rows, H, W, 3] uint8."""
    import cv2

    from .video import resize_rgb

    frames = []
    for row, item in enumerate(table.column(key).to_pylist()):
        data = item.get("bytes") if isinstance(item, dict) else None
        if not data:
            raise LeRobotFormatError(f"{where}: '{key}' row {row} has no embedded image bytes (images stored "
                                     "only as paths are not read)")
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)  # [H, W, 3] BGR
        if image is None:
            raise LeRobotFormatError(f"{where}: '{key}' row {row} is not a decodable PNG/JPEG image")
        frames.append(resize_rgb(np.ascontiguousarray(image[:, :, ::-1]), size, fit))
        if frames[-1].shape != frames[0].shape:
            raise LeRobotFormatError(f"{where}: '{key}' row {row} is {frames[-1].shape[:2]} (HxW), row 0 is "
                                     f"{frames[0].shape[:2]}; pass --image-size HxW")
    return np.stack(frames)  # [rows, H, W, 3]


def _episode_video_table(root: Path, video_keys: Sequence[str]) -> Dict[int, Dict[str, Tuple[int, int, float]]]:
    """episode index -> {video key: (chunk_index, file_index, from_timestamp)}, plus lengths check data."""
    files = sorted((root / EPISODES_DIR).glob("*/*.parquet"))
    if not files:
        raise LeRobotFormatError(f"{root / EPISODES_DIR}: no episode metadata parquet files (needed to find "
                                 "each episode's frames in the videos)")
    out: Dict[int, Dict[str, Tuple[int, int, float]]] = {}
    for path in files:
        cols = ["episode_index"]
        for key in video_keys:
            cols += [f"videos/{key}/chunk_index", f"videos/{key}/file_index", f"videos/{key}/from_timestamp"]
        table = read_parquet(path, cols)
        episodes = column_matrix(table, "episode_index", 1, path)[:, 0].astype(np.int64)  # [E]
        per_key = {key: (column_matrix(table, f"videos/{key}/chunk_index", 1, path)[:, 0].astype(np.int64),
                         column_matrix(table, f"videos/{key}/file_index", 1, path)[:, 0].astype(np.int64),
                         column_matrix(table, f"videos/{key}/from_timestamp", 1, path)[:, 0])
                   for key in video_keys}
        for row, ep in enumerate(episodes.tolist()):
            out[ep] = {key: (int(c[row]), int(f[row]), float(t[row])) for key, (c, f, t) in per_key.items()}
    return out


def _read_frames_table(root: Path, info: dict, mapping: LeRobotMapping, image_cols: Sequence[str],
                       size, fit: str = "resize") -> Dict[int, dict]:
    """episode index -> {"frame_index": [N], "timestamp": [N], key: [N, w] or images} (rows in frame order)."""
    features = info["features"]
    files = sorted((root / DATA_DIR).glob("*/*.parquet"))
    if not files:
        raise LeRobotFormatError(f"{root / DATA_DIR}: no data parquet files (data/chunk-XXX/file-XXX.parquet)")
    low = ["action"] + [k for k, _ in mapping.state_features]
    pieces: Dict[int, List[dict]] = {}
    for path in files:
        table = read_parquet(path, ["episode_index", "frame_index", "timestamp", *low, *image_cols])
        episode = column_matrix(table, "episode_index", 1, path)[:, 0].astype(np.int64)  # [R]
        cols = {"frame_index": column_matrix(table, "frame_index", 1, path)[:, 0].astype(np.int64),  # [R]
                "timestamp": column_matrix(table, "timestamp", 1, path)[:, 0]}  # [R] s
        for key in low:
            width = int(np.prod(features[key]["shape"])) if features[key]["shape"] else 1
            cols[key] = column_matrix(table, key, width, path)  # [R, width]
        for key in image_cols:
            cols[key] = _decode_image_column(table, key, path, size, fit)  # [R, H, W, 3]
        for ep in np.unique(episode).tolist():
            rows = np.flatnonzero(episode == ep)
            pieces.setdefault(int(ep), []).append({k: v[rows] for k, v in cols.items()} | {"_file": path})
    episodes = {}
    for ep, parts in sorted(pieces.items()):
        merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0] if k != "_file"}
        order = np.argsort(merged["frame_index"], kind="stable")
        merged = {k: v[order] for k, v in merged.items()}
        dup = np.flatnonzero(np.diff(merged["frame_index"]) == 0)
        if dup.size:
            raise LeRobotFormatError(f"{parts[0]['_file']}: episode {ep} repeats frame_index "
                                     f"{merged['frame_index'][dup[0]]}")
        merged["_file"] = parts[0]["_file"]
        episodes[ep] = merged
    return episodes


def _read_sidecar(root: Path, joint_names: List[str]) -> dict:
    path = root / SIDECAR_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LeRobotFormatError(f"{path}: not valid UTF-8 JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("joint_names") != joint_names:
        return {}
    return {k: data[k] for k in ("joint_lower_limits", "joint_upper_limits", "units", "description") if k in data}


def read_lerobot(root, obs_keys: Optional[Sequence[str]] = None, images: bool = False,
                 image_size: Optional[Tuple[int, int]] = None, image_fit: str = "resize"
                 ) -> Tuple[DatasetMetadata, List[Episode], LeRobotMapping]:
    """Episodes of the LeRobotDataset at ``root`` (see the module docstring for the mapping).

    ``obs_keys``: feature keys (or camera names) to observe, low-dimensional ones in state
    order; default ``observation.state`` (+ every camera with ``images``). ``image_size``:
    (H, W) to resize every camera to (needed when cameras differ in size), by ``image_fit``
    (``resize`` or ``center_crop_resize``, recorded as the data set's ``image_preprocess``).
    """
    from .video import decode_frames_at

    root = Path(root)
    info = read_info(root)
    mapping = plan_mapping(root, info, obs_keys, images, image_size)
    features = info["features"]
    image_cols = [k for k in mapping.cameras.values() if features[k]["dtype"] == "image"]
    video_cols = [k for k in mapping.cameras.values() if features[k]["dtype"] == "video"]
    table = _read_frames_table(root, info, mapping, image_cols, image_size, image_fit)
    if video_cols:
        if not isinstance(info.get("video_path"), str):
            raise LeRobotFormatError(f"{root / INFO_FILE}: 'video_path' must be a path template for video features")
        where = _episode_video_table(root, video_cols)
        missing = sorted(set(table) - set(where))
        if missing:
            raise LeRobotFormatError(f"{root / EPISODES_DIR}: no video entries for episodes {missing[:10]}")
        tolerance = FRAME_TOLERANCE / mapping.fps
        for key in video_cols:
            by_file: Dict[Tuple[int, int], List[int]] = {}
            for ep in table:
                chunk, file, _ = where[ep][key]
                by_file.setdefault((chunk, file), []).append(ep)
            for (chunk, file), eps in sorted(by_file.items()):
                try:
                    rel = info["video_path"].format(video_key=key, chunk_index=chunk, file_index=file)
                except (KeyError, IndexError, ValueError) as exc:
                    raise LeRobotFormatError(f"{root / INFO_FILE}: bad 'video_path' template ({exc})") from None
                times = np.concatenate([where[ep][key][2] + table[ep]["timestamp"] for ep in eps])  # [sum N] s
                frames = decode_frames_at(root / rel, times, tolerance, image_size, image_fit)  # [sum N, H, W, 3]
                start = 0
                for ep in eps:
                    n = len(table[ep]["timestamp"])
                    table[ep][key] = frames[start:start + n]
                    start += n
    sizes = {cam: tuple(table[next(iter(table))][key].shape[1:3]) for cam, key in mapping.cameras.items()} \
        if table else {}
    if len(set(sizes.values())) > 1:
        raise LeRobotFormatError(f"{root}: cameras differ in size {sizes}; a policy needs one size: pass "
                                 "--image-size HxW")
    if sizes and image_size is None:
        mapping.image_size = next(iter(sizes.values()))
    extra = _read_sidecar(root, mapping.joint_names)
    meta = DatasetMetadata(
        joint_names=mapping.joint_names, state_names=mapping.state_names, dt=mapping.dt,
        cameras={cam: list(size) for cam, size in sizes.items()},
        units=extra.get("units", {"timestamp": "s"}),
        joint_lower_limits=extra.get("joint_lower_limits"), joint_upper_limits=extra.get("joint_upper_limits"),
        description=extra.get("description") or f"converted from LeRobotDataset {root} "
                                                f"(robot_type {info.get('robot_type')!r})",
        image_preprocess=image_fit)
    if extra:
        mapping.notes.append(f"joint limits and units from {SIDECAR_FILE}")
    episodes = []
    for ep, cols in table.items():
        state = np.concatenate([cols[k] for k, _ in mapping.state_features], axis=1) \
            if mapping.state_features else np.zeros((len(cols["timestamp"]), 0))  # [N, D_s]
        episode = Episode(timestamp=cols["timestamp"], action=cols["action"], state=state,
                          images={cam: cols[key] for cam, key in mapping.cameras.items()})
        episodes.append(episode.validate(meta, where=f"{cols['_file']} (episode_index {ep})"))
    if not episodes:
        raise LeRobotFormatError(f"{root / DATA_DIR}: the data files hold no frames")
    mapping.episodes = len(episodes)
    mapping.frames = int(sum(len(e) for e in episodes))
    return meta, episodes, mapping
