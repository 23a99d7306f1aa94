"""Data sets written by hand in the formats' documented layouts (pyarrow / PyAV / h5py
directly, not through this package's writers). Not a test module; test/data is on pytest's
pythonpath (pytest.ini)."""
import json
from fractions import Fraction

import numpy as np

FPS = 30
LENGTHS = (12, 9, 15)  # frames of the three hand-made episodes
H, W = 48, 64


def frame_value(episode: int, frame: int) -> int:
    """The uniform grey level of a hand-made frame: identifies (episode, frame) after decoding."""
    return (episode * 40 + frame * 3) % 250


def _encode_av1(path, frames, fps):
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libsvtav1", rate=Fraction(fps, 1))
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for i, image in enumerate(frames):
            f = av.VideoFrame.from_ndarray(image, format="rgb24")
            f.pts = i
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def _png(image):
    import cv2

    ok, data = cv2.imencode(".png", image[:, :, ::-1])
    assert ok
    return data.tobytes()


def make_lerobot(root, *, codebase_version="v3.0", fps=FPS, wrist_size=(H, W), depth=False, edit=None):
    """A LeRobotDataset v3 as LeRobot documents it: 3 episodes over two data files, one AV1
    video file holding all episodes of camera 'front' back to back, PNG images of camera
    'wrist' embedded in the parquet. ``edit(tables)`` may change the tables before writing.

    Content: action[k] = (e, k, -k), observation.state = action - 0.5, environment_state =
    (e * 10, k); every frame is one grey level, :func:`frame_value`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows, front = [], []
    for e, n in enumerate(LENGTHS):
        for k in range(n):
            grey = frame_value(e, k)
            wrist = np.full((*wrist_size, 3), grey, np.uint8)
            front.append(np.full((H, W, 3), grey, np.uint8))
            rows.append({"e": e, "k": k, "wrist": _png(wrist)})
    total = len(rows)
    episode = np.array([r["e"] for r in rows])
    frame = np.array([r["k"] for r in rows])
    action = np.stack([episode, frame, -frame], axis=1).astype(np.float32)  # [total, 3]

    def lists(values):  # variable-length list columns (what older writers produce)
        return pa.array([list(map(float, v)) for v in values], type=pa.list_(pa.float32()))

    data = pa.table({
        "action": lists(action),
        "observation.state": lists(action - 0.5),
        "observation.environment_state": lists(np.stack([episode * 10, frame], axis=1)),
        "observation.images.wrist": pa.array([{"bytes": r["wrist"], "path": None} for r in rows],
                                             type=pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
        "language": pa.array(["reach"] * total),
        "timestamp": pa.array(frame / fps, type=pa.float32()),
        "frame_index": pa.array(frame, type=pa.int64()),
        "episode_index": pa.array(episode, type=pa.int64()),
        "index": pa.array(np.arange(total), type=pa.int64()),
        "task_index": pa.array(np.zeros(total, dtype=np.int64)),
    })
    starts = np.concatenate([[0], np.cumsum(LENGTHS)])
    episodes = pa.table({
        "episode_index": pa.array([0, 1, 2], type=pa.int64()),
        "tasks": pa.array([["reach"]] * 3),
        "length": pa.array(list(LENGTHS), type=pa.int64()),
        "data/chunk_index": pa.array([0, 0, 0], type=pa.int64()),
        "data/file_index": pa.array([0, 0, 1], type=pa.int64()),
        "dataset_from_index": pa.array(starts[:-1], type=pa.int64()),
        "dataset_to_index": pa.array(starts[1:], type=pa.int64()),
        "videos/observation.images.front/chunk_index": pa.array([0, 0, 0], type=pa.int64()),
        "videos/observation.images.front/file_index": pa.array([0, 0, 0], type=pa.int64()),
        "videos/observation.images.front/from_timestamp": pa.array(starts[:-1] / fps),
        "videos/observation.images.front/to_timestamp": pa.array(starts[1:] / fps),
    })
    tables = {"data": data, "episodes": episodes}
    if edit is not None:
        edit(tables)
    data = tables["data"]
    split = int(starts[2])
    (root / "data" / "chunk-000").mkdir(parents=True)
    pq.write_table(data.slice(0, split), root / "data" / "chunk-000" / "file-000.parquet")
    pq.write_table(data.slice(split), root / "data" / "chunk-000" / "file-001.parquet")
    (root / "meta" / "episodes" / "chunk-000").mkdir(parents=True)
    pq.write_table(tables["episodes"], root / "meta" / "episodes" / "chunk-000" / "file-000.parquet")
    _encode_av1(root / "videos" / "observation.images.front" / "chunk-000" / "file-000.mp4", np.stack(front), fps)
    features = {
        "action": {"dtype": "float32", "shape": [3], "names": {"motors": ["j0", "j1", "j2"]}},
        "observation.state": {"dtype": "float32", "shape": [3], "names": ["j0", "j1", "j2"]},
        "observation.environment_state": {"dtype": "float32", "shape": [2], "names": None},
        "observation.images.front": {"dtype": "video", "shape": [H, W, 3], "names": ["height", "width", "channels"],
                                     "info": {"video.codec": "av1", "video.is_depth_map": depth}},
        "observation.images.wrist": {"dtype": "image", "shape": [*wrist_size, 3],
                                     "names": ["height", "width", "channels"]},
        "language": {"dtype": "string", "shape": [1], "names": None},
        "timestamp": {"dtype": "float32", "shape": [1], "names": None},
        "frame_index": {"dtype": "int64", "shape": [1], "names": None},
        "episode_index": {"dtype": "int64", "shape": [1], "names": None},
        "index": {"dtype": "int64", "shape": [1], "names": None},
        "task_index": {"dtype": "int64", "shape": [1], "names": None},
    }
    info = {"codebase_version": codebase_version, "robot_type": "test_arm", "total_episodes": 3,
            "total_frames": total, "total_tasks": 1, "chunks_size": 1000, "fps": fps,
            "splits": {"train": "0:3"},
            "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
            "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
            "features": features}
    (root / "meta" / "info.json").write_text(json.dumps(info, indent=2))
    return root


ROBOMIMIC_LENGTHS = (7, 5, 9)


def make_robomimic(path, *, env_args=None, edit=None):
    """A robomimic HDF5 file in its documented layout (``data/demo_N/{obs, next_obs, actions,
    rewards, dones, states}``, ``mask/{train,valid}``). Demo i: actions[k] = (i, k, 0.5 k, -k),
    eef_pos[k] = (i, k, 1), gripper[k] = k/10, agentview_image frames of grey level 10 i + k."""
    import h5py

    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        data.attrs["total"] = sum(ROBOMIMIC_LENGTHS)
        data.attrs["env_args"] = json.dumps(env_args if env_args is not None else
                                            {"env_name": "Lift", "type": 1, "env_kwargs": {"control_freq": 20}})
        for i, n in enumerate(ROBOMIMIC_LENGTHS):
            g = data.create_group(f"demo_{i}")
            g.attrs["num_samples"] = n
            k = np.arange(n, dtype=np.float64)
            g["actions"] = np.stack([np.full(n, i), k, 0.5 * k, -k], axis=1)  # [n, 4]
            g["rewards"] = np.zeros(n)
            g["dones"] = np.zeros(n, dtype=np.int64)
            g["states"] = np.zeros((n, 10))
            for obs in ("obs", "next_obs"):
                o = g.create_group(obs)
                o["robot0_eef_pos"] = np.stack([np.full(n, i), k, np.ones(n)], axis=1)  # [n, 3]
                o["robot0_gripper_qpos"] = (k / 10)[:, None]  # [n, 1]
                o["agentview_image"] = np.stack([np.full((8, 10, 3), 10 * i + j, np.uint8) for j in range(n)])
        mask = f.create_group("mask")
        mask["train"] = np.array([b"demo_0", b"demo_2"])
        mask["valid"] = np.array([b"demo_1"])
        if edit is not None:
            edit(f)
    return path
