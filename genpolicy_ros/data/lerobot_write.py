"""Write episodes as a LeRobotDataset (format v3.0) that LeRobot ≥ 0.4 loads.

Layout written (the one LeRobot's own writer produces; templates in ``meta/info.json``)::

    meta/info.json                      codebase_version "v3.0", fps, features, totals, path templates
    meta/stats.json                     per feature: min, max, mean, std, count, q01 q10 q50 q90 q99
    meta/tasks.parquet                  task_index, indexed by the task text (pandas index)
    meta/episodes/chunk-000/file-000.parquet   one row per episode: episode_index, tasks, length,
                                        data/{chunk,file}_index, dataset_{from,to}_index,
                                        videos/<key>/{chunk_index,file_index,from_timestamp,to_timestamp},
                                        stats/<feature>/<stat>, meta/episodes/{chunk,file}_index
    meta/genpolicy_ros.json             ours (LeRobot ignores it): joint limits, units, description
    data/chunk-000/file-000.parquet     one row per frame: action, observation.state [float32 lists],
                                        timestamp float32, frame_index, episode_index, index, task_index int64
    videos/observation.images.<camera>/chunk-000/file-000.mp4   H.264 (yuv420p), episodes back to back

Frames are uniform in time, as LeRobot assumes (row ``k`` of an episode at ``k / fps``):
each episode is resampled onto that grid by nearest stamp (a no-op for data recorded on a
grid, e.g. ``genpolicy train --bag`` output); ``fps = 1 / dt`` must be a whole number.
New data / video files start past 100 / 200 MB, new chunk folders every 1000 files.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Iterable, List, Optional

import numpy as np

from .episodes import DatasetMetadata, Episode
from .lerobot import SIDECAR_FILE, LeRobotFormatError

CODEBASE_VERSION = "v3.0"
CHUNKS_SIZE = 1000
DATA_FILE_MB = 100
VIDEO_FILE_MB = 200
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
IMAGE_STAT_FRAMES = 100  # frames per episode sampled for image statistics
DEFAULT_TASK = "genpolicy_ros demonstration"


def lerobot_fps(dt: float) -> int:
    fps = int(round(1.0 / dt))
    if fps < 1 or abs(fps * dt - 1.0) > 1e-6:
        raise LeRobotFormatError(f"dt = {dt} s is {1.0 / dt:.6g} frames per second; LeRobotDataset stores a whole "
                                 "number of frames per second: resample with a dt of 1/N s")
    return fps


def uniform_episode(episode: Episode, fps: int) -> tuple:
    """``episode`` on the grid ``t0 + k/fps`` by nearest stamp → (Episode, rows that moved)."""
    from .dataset import nearest_indices

    t = episode.timestamp  # [N] s
    steps = int(np.floor((t[-1] - t[0]) * fps + 0.5))
    grid = t[0] + np.arange(steps + 1) / fps  # [K] s
    idx = nearest_indices(t, grid)  # [K]
    moved = int(np.sum(np.abs(t[idx] - grid) > 0.25 / fps))
    return Episode(timestamp=np.arange(steps + 1) / fps, action=episode.action[idx], state=episode.state[idx],
                   images={c: v[idx] for c, v in episode.images.items()}), moved


def feature_stats(values: np.ndarray) -> Dict[str, np.ndarray]:
    """``values`` [N, D] → LeRobot's per-feature statistics (each [D]; count [1])."""
    values = np.asarray(values)
    out = {"min": values.min(axis=0), "max": values.max(axis=0)}  # integer features keep integer extremes
    values = values.astype(np.float64)
    out |= {"mean": values.mean(axis=0), "std": values.std(axis=0), "count": np.array([values.shape[0]])}
    for q in QUANTILES:
        out[f"q{int(round(q * 100)):02d}"] = np.quantile(values, q, axis=0)
    return out


def image_stats(frames: np.ndarray) -> Dict[str, np.ndarray]:
    """``frames`` [N, H, W, 3] uint8 → per-channel statistics in [0, 1], each [3, 1, 1] (count [1])."""
    pixels = frames.reshape(-1, 3).astype(np.float64) / 255.0  # [N*H*W, 3]
    stats = feature_stats(pixels)
    return {k: v if k == "count" else v.reshape(3, 1, 1) for k, v in stats.items()} | \
        {"count": np.array([frames.shape[0]])}


def _to_json(stats: dict) -> dict:
    return {key: {k: np.asarray(v).tolist() for k, v in s.items()} for key, s in stats.items()}


class _RollingFiles:
    """chunk/file indices that advance when a file passes ``limit_mb``."""

    def __init__(self, limit_mb: int):
        self.limit = limit_mb * 1024 * 1024
        self.chunk, self.file = 0, 0

    def advance(self) -> None:
        self.file += 1
        if self.file == CHUNKS_SIZE:
            self.chunk, self.file = self.chunk + 1, 0


def write_lerobot(out_dir, metadata: DatasetMetadata, episodes: Iterable[Episode], *, task: Optional[str] = None,
                  robot_type: Optional[str] = None, codec: str = "libx264", crf: int = 18) -> dict:
    """Write ``episodes`` (validated against ``metadata``) as a LeRobotDataset at ``out_dir``.

    ``out_dir`` must not exist or be empty. Returns a summary: ``episodes``, ``frames``,
    ``fps``, ``resampled_rows`` (rows whose stamp was off the 1/fps grid), ``files``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .video import VideoEncoder, video_stream_info

    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty; choose a new directory for the LeRobotDataset")
    fps = lerobot_fps(metadata.dt)
    task = task or DEFAULT_TASK
    video_keys = {cam: f"observation.images.{cam}" for cam in metadata.cameras}
    data_files, video_files = _RollingFiles(DATA_FILE_MB), {cam: _RollingFiles(VIDEO_FILE_MB) for cam in video_keys}
    writer = None
    data_path = None
    encoders: Dict[str, VideoEncoder] = {}
    video_paths: Dict[str, Path] = {}
    episode_rows: List[dict] = []
    all_low: Dict[str, List[np.ndarray]] = {}  # feature -> per-episode [n, D] values
    image_samples: Dict[str, List[np.ndarray]] = {cam: [] for cam in video_keys}
    total, resampled = 0, 0
    try:
        for ep_index, raw in enumerate(episodes):
            episode, moved = uniform_episode(raw.validate(metadata, where=f"episode {ep_index}"), fps)
            resampled += moved
            n = len(episode)
            columns = {
                "action": episode.action,  # [n, D_a] float32
                "observation.state": episode.state,  # [n, D_s] float32
                "timestamp": episode.timestamp.astype(np.float32),  # [n] s from the episode start
                "frame_index": np.arange(n, dtype=np.int64),
                "episode_index": np.full(n, ep_index, dtype=np.int64),
                "index": np.arange(total, total + n, dtype=np.int64),
                "task_index": np.zeros(n, dtype=np.int64),
            }
            if metadata.state_dim == 0:
                del columns["observation.state"]
            table = pa.table({k: _arrow_column(v) for k, v in columns.items()})
            if writer is not None and data_path.stat().st_size > data_files.limit:
                writer.close()
                writer = None
                data_files.advance()
            if writer is None:
                data_path = out / DATA_PATH.format(chunk_index=data_files.chunk, file_index=data_files.file)
                data_path.parent.mkdir(parents=True, exist_ok=True)
                writer = pq.ParquetWriter(data_path, table.schema, compression="snappy")
            writer.write_table(table)
            row = {"episode_index": ep_index, "tasks": [task], "length": n,
                   "data/chunk_index": data_files.chunk, "data/file_index": data_files.file,
                   "dataset_from_index": total, "dataset_to_index": total + n}
            for cam, key in video_keys.items():
                rolling = video_files[cam]
                enc = encoders.get(cam)
                if enc is not None and video_paths[cam].stat().st_size > rolling.limit:
                    enc.close()
                    enc = None
                    rolling.advance()
                if enc is None:
                    h, w = metadata.cameras[cam]
                    video_paths[cam] = out / VIDEO_PATH.format(video_key=key, chunk_index=rolling.chunk,
                                                               file_index=rolling.file)
                    enc = encoders[cam] = VideoEncoder(video_paths[cam], fps, h, w, codec=codec, crf=crf)
                start = enc.frames / fps
                enc.write(episode.images[cam])
                row |= {f"videos/{key}/chunk_index": rolling.chunk, f"videos/{key}/file_index": rolling.file,
                        f"videos/{key}/from_timestamp": start, f"videos/{key}/to_timestamp": start + n / fps}
            stats = {k: feature_stats(v) for k, v in columns.items() if v.ndim == 2} | \
                {k: feature_stats(v[:, None]) for k, v in columns.items() if v.ndim == 1}
            for cam, key in video_keys.items():
                sample = episode.images[cam][np.linspace(0, n - 1, min(n, IMAGE_STAT_FRAMES)).astype(int)]
                image_samples[cam].append(sample)
                stats[key] = image_stats(sample)
            for feature, s in stats.items():
                row |= {f"stats/{feature}/{k}": np.asarray(v).tolist() for k, v in s.items()}
            row |= {"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0}
            episode_rows.append(row)
            for key, values in columns.items():
                all_low.setdefault(key, []).append(values if values.ndim == 2 else values[:, None])
            total += n
    finally:
        if writer is not None:
            writer.close()
        for enc in encoders.values():
            enc.close()
    if not episode_rows:
        raise LeRobotFormatError(f"{out}: no episodes to write")
    _write_meta(out, metadata, fps, task, robot_type, episode_rows, all_low, image_samples, video_keys,
                {cam: video_stream_info(out / VIDEO_PATH.format(video_key=key, chunk_index=0, file_index=0))
                 for cam, key in video_keys.items()})
    return {"episodes": len(episode_rows), "frames": total, "fps": fps, "resampled_rows": resampled,
            "files": sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())}


def _arrow_column(values: np.ndarray):
    """[n] → a scalar column; [n, D] → fixed-size lists of D (LeRobot's ``Sequence(length=D)``)."""
    import pyarrow as pa

    if values.ndim == 1:
        return pa.array(values)
    flat = pa.array(np.ascontiguousarray(values, dtype=np.float32).reshape(-1))
    return pa.FixedSizeListArray.from_arrays(flat, values.shape[1])


def _write_meta(out: Path, metadata: DatasetMetadata, fps: int, task: str, robot_type, episode_rows, all_low,
                image_samples, video_keys, video_info) -> None:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    total = int(sum(r["length"] for r in episode_rows))
    features = {"action": {"dtype": "float32", "shape": [metadata.action_dim], "names": metadata.joint_names}}
    if metadata.state_dim:
        features["observation.state"] = {"dtype": "float32", "shape": [metadata.state_dim],
                                         "names": metadata.state_names}
    for cam, key in video_keys.items():
        h, w = metadata.cameras[cam]
        features[key] = {"dtype": "video", "shape": [h, w, 3], "names": ["height", "width", "channels"],
                         "info": video_info[cam]}
    for key, dtype in (("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"),
                       ("index", "int64"), ("task_index", "int64")):
        features[key] = {"dtype": dtype, "shape": [1], "names": None}
    info = {"codebase_version": CODEBASE_VERSION, "robot_type": robot_type, "total_episodes": len(episode_rows),
            "total_frames": total, "total_tasks": 1, "chunks_size": CHUNKS_SIZE,
            "data_files_size_in_mb": DATA_FILE_MB, "video_files_size_in_mb": VIDEO_FILE_MB, "fps": fps,
            "splits": {"train": f"0:{len(episode_rows)}"}, "data_path": DATA_PATH,
            "video_path": VIDEO_PATH if video_keys else None, "features": features}
    meta = out / "meta"
    meta.mkdir(parents=True, exist_ok=True)
    (meta / "info.json").write_text(json.dumps(info, indent=4) + "\n", encoding="utf-8")
    stats = {k: feature_stats(np.concatenate(v)) for k, v in all_low.items() if v}
    stats |= {key: image_stats(np.concatenate(image_samples[cam])) for cam, key in video_keys.items()}
    for key in video_keys.values():  # count = frames, as LeRobot counts them
        stats[key]["count"] = np.array([total])
    (meta / "stats.json").write_text(json.dumps(_to_json(stats), indent=4) + "\n", encoding="utf-8")
    # LeRobot reads tasks with pandas and looks a task up by the frame's index: keep the pandas index.
    pd.DataFrame({"task_index": [0]}, index=[task]).to_parquet(meta / "tasks.parquet")
    episodes_path = out / EPISODES_PATH.format(chunk_index=0, file_index=0)
    episodes_path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(episode_rows), episodes_path)
    sidecar = {"joint_names": metadata.joint_names, "joint_lower_limits": metadata.joint_lower_limits,
               "joint_upper_limits": metadata.joint_upper_limits, "units": metadata.units,
               "description": metadata.description}
    (out / SIDECAR_FILE).write_text(json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")
