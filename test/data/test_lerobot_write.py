"""Writing LeRobotDataset v3: the files, columns and dtypes of LeRobot's documented layout,
a lossless round trip of states/actions (and close frames), uniform time, refusals."""
import json

import numpy as np
import pytest

from genpolicy_ros.data.episodes import DatasetMetadata, Episode
from genpolicy_ros.data.lerobot import LeRobotFormatError, read_lerobot
from genpolicy_ros.data.lerobot_write import write_lerobot

META = DatasetMetadata(joint_names=["shoulder", "elbow"], state_names=["shoulder", "elbow", "target_x"], dt=0.05,
                       cameras={"overhead": [32, 48]}, joint_lower_limits=[-3.0, -2.5],
                       joint_upper_limits=[3.0, 2.5], units={"timestamp": "s", "action": "rad", "state": "rad|m"},
                       description="test arm")


def _episodes(lengths=(10, 7), start=100.0):
    rng = np.random.default_rng(0)
    out = []
    for e, n in enumerate(lengths):
        grey = (np.arange(n) * 20 + 40 * e) % 250
        frames = np.broadcast_to(grey[:, None, None, None], (n, 32, 48, 3)).astype(np.uint8)  # [n, 32, 48, 3]
        out.append(Episode(timestamp=start + 0.05 * np.arange(n), action=rng.normal(size=(n, 2)).astype(np.float32),
                           state=rng.normal(size=(n, 3)).astype(np.float32), images={"overhead": frames.copy()}))
    return out


def test_written_data_set_has_the_documented_v3_layout(tmp_path):
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from genpolicy_ros.data.video import decode_frames_at, video_stream_info

    out = tmp_path / "lr"
    summary = write_lerobot(out, META, _episodes(), task="reach the target", robot_type="reach2d")
    assert summary["files"] == ["data/chunk-000/file-000.parquet", "meta/episodes/chunk-000/file-000.parquet",
                                "meta/genpolicy_ros.json", "meta/info.json", "meta/stats.json", "meta/tasks.parquet",
                                "videos/observation.images.overhead/chunk-000/file-000.mp4"]
    info = json.loads((out / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == 20 and info["robot_type"] == "reach2d"
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (2, 17, 1)
    assert info["splits"] == {"train": "0:2"}
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert info["video_path"] == "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    f = info["features"]
    assert f["action"] == {"dtype": "float32", "shape": [2], "names": ["shoulder", "elbow"]}
    assert f["observation.state"] == {"dtype": "float32", "shape": [3], "names": ["shoulder", "elbow", "target_x"]}
    video = f["observation.images.overhead"]
    assert (video["dtype"], video["shape"], video["names"]) == ("video", [32, 48, 3], ["height", "width", "channels"])
    assert video["info"]["video.codec"] == "h264" and video["info"]["video.fps"] == 20
    assert video["info"]["video.pix_fmt"] == "yuv420p" and video["info"]["video.is_depth_map"] is False
    for key, dtype in (("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"),
                       ("index", "int64"), ("task_index", "int64")):
        assert f[key] == {"dtype": dtype, "shape": [1], "names": None}

    data = pq.read_table(out / "data/chunk-000/file-000.parquet")
    s = data.schema
    assert s.field("action").type == pa.list_(pa.float32(), 2)  # LeRobot's Sequence(length=2)
    assert s.field("observation.state").type == pa.list_(pa.float32(), 3)
    assert s.field("timestamp").type == pa.float32()
    for key in ("frame_index", "episode_index", "index", "task_index"):
        assert s.field(key).type == pa.int64()
    assert "observation.images.overhead" not in s.names  # videos live in the MP4 only
    np.testing.assert_array_equal(data.column("index").to_numpy(), np.arange(17))
    np.testing.assert_array_equal(data.column("frame_index").to_numpy(), np.r_[np.arange(10), np.arange(7)])
    np.testing.assert_allclose(data.column("timestamp").to_numpy(), np.r_[np.arange(10), np.arange(7)] * 0.05,
                               atol=1e-6)

    eps = pq.read_table(out / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [e["episode_index"] for e in eps] == [0, 1] and [e["length"] for e in eps] == [10, 7]
    assert [e["tasks"] for e in eps] == [["reach the target"]] * 2
    assert [(e["dataset_from_index"], e["dataset_to_index"]) for e in eps] == [(0, 10), (10, 17)]
    assert [(e["data/chunk_index"], e["data/file_index"]) for e in eps] == [(0, 0), (0, 0)]
    key = "videos/observation.images.overhead"
    assert [(e[f"{key}/from_timestamp"], e[f"{key}/to_timestamp"]) for e in eps] == \
        [pytest.approx((0.0, 0.5)), pytest.approx((0.5, 0.85))]
    assert eps[0]["stats/action/count"] == [10] and len(eps[0]["stats/observation.images.overhead/mean"]) == 3

    tasks = pd.read_parquet(out / "meta/tasks.parquet")  # as LeRobot reads it: the task is the index
    assert list(tasks.index) == ["reach the target"] and list(tasks["task_index"]) == [0]

    stats = json.loads((out / "meta/stats.json").read_text())
    assert set(stats) == {"action", "observation.state", "observation.images.overhead", "timestamp", "frame_index",
                          "episode_index", "index", "task_index"}
    assert set(stats["action"]) == {"min", "max", "mean", "std", "count", "q01", "q10", "q50", "q90", "q99"}
    assert np.array(stats["observation.images.overhead"]["mean"]).shape == (3, 1, 1)
    assert stats["action"]["count"] == [17] and stats["observation.images.overhead"]["count"] == [17]

    mp4 = out / "videos/observation.images.overhead/chunk-000/file-000.mp4"
    assert video_stream_info(mp4)["video.codec"] == "h264"
    frames = decode_frames_at(mp4, np.arange(17) / 20, tolerance_s=1e-4)  # LeRobot's own tolerance
    grey = np.r_[(np.arange(10) * 20) % 250, (np.arange(7) * 20 + 40) % 250]
    np.testing.assert_allclose(frames.reshape(17, -1).mean(axis=1), grey, atol=2.0)


def test_round_trip_keeps_states_actions_limits_and_frames(tmp_path):
    episodes = _episodes()
    write_lerobot(tmp_path / "lr", META, episodes)
    meta, back, mapping = read_lerobot(tmp_path / "lr", images=True)
    assert meta.joint_names == META.joint_names and meta.state_names == META.state_names
    assert meta.cameras == META.cameras and meta.dt == pytest.approx(META.dt)
    assert meta.joint_lower_limits == META.joint_lower_limits and meta.units == META.units  # meta/genpolicy_ros.json
    for a, b in zip(episodes, back):
        np.testing.assert_array_equal(a.action, b.action)
        np.testing.assert_array_equal(a.state, b.state)
        np.testing.assert_allclose(b.timestamp, a.timestamp - a.timestamp[0], atol=1e-5)
        assert np.abs(a.images["overhead"].astype(int) - b.images["overhead"]).mean() < 2.0


def test_off_grid_stamps_are_resampled_to_uniform_frames(tmp_path):
    ep = _episodes(lengths=(10,))[0]
    ep.timestamp = ep.timestamp + np.r_[0, 0, 0, 0.02, 0, 0, 0, 0, 0, 0]  # row 3 late by 20 ms (< half a period)
    keep = np.r_[0:5, 6:10]  # and row 5 lost
    gappy = Episode(ep.timestamp[keep], ep.action[keep], ep.state[keep], {"overhead": ep.images["overhead"][keep]})
    summary = write_lerobot(tmp_path / "lr", META, [gappy])
    assert summary["frames"] == 10 and summary["resampled_rows"] == 2  # the late row and the lost one
    _, back, _ = read_lerobot(tmp_path / "lr")
    np.testing.assert_allclose(back[0].timestamp, np.arange(10) * 0.05, atol=1e-6)
    np.testing.assert_array_equal(back[0].action[3], ep.action[3])  # nearest stamp: the late row 3
    np.testing.assert_array_equal(back[0].action[5], ep.action[4])  # ties go to the earlier row


def test_refusals(tmp_path):
    with pytest.raises(LeRobotFormatError, match="whole number of frames per second"):
        write_lerobot(tmp_path / "a", DatasetMetadata(joint_names=["j"], state_names=["j"], dt=0.03),
                      [Episode(np.arange(3) * 0.03, np.zeros((3, 1)), np.zeros((3, 1)))])
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        write_lerobot(tmp_path / "b", META, _episodes())
    bad = _episodes()[0]
    bad.action = bad.action[:, :1]
    with pytest.raises(ValueError, match=r"episode 0: 'action' has 1 dims"):
        write_lerobot(tmp_path / "c", META, [bad])


def test_columns_and_types_match_what_lerobot_itself_writes(tmp_path):
    """Against test/data/fixtures/lerobot_0.4.4_so100, written by LeRobot 0.4.4's own writer."""
    from pathlib import Path

    import pyarrow.parquet as pq

    theirs = Path(__file__).parent / "fixtures" / "lerobot_0.4.4_so100"
    ours = tmp_path / "lr"
    meta = DatasetMetadata(joint_names=["a", "b", "c"], state_names=["a", "b", "c"], dt=1 / 30,
                           cameras={"front": [48, 64]})
    n = 20
    frames = np.zeros((n, 48, 64, 3), np.uint8)
    write_lerobot(ours, meta, [Episode(np.arange(n) / 30, np.zeros((n, 3)), np.zeros((n, 3)), {"front": frames})])

    def schema(root, rel):
        return {f.name: str(f.type) for f in pq.read_schema(root / rel)}

    data = "data/chunk-000/file-000.parquet"
    assert schema(ours, data) == schema(theirs, data)
    episodes = "meta/episodes/chunk-000/file-000.parquet"
    assert schema(ours, episodes) == schema(theirs, episodes)
    assert schema(ours, "meta/tasks.parquet") == schema(theirs, "meta/tasks.parquet")
    info_ours, info_theirs = (json.loads((r / "meta/info.json").read_text()) for r in (ours, theirs))
    assert set(info_ours) == set(info_theirs)
    for key in ("codebase_version", "chunks_size", "data_files_size_in_mb", "video_files_size_in_mb", "data_path",
                "video_path", "fps"):
        assert info_ours[key] == info_theirs[key], key
    for key in ("timestamp", "frame_index", "episode_index", "index", "task_index", "observation.state"):
        assert {k: v for k, v in info_ours["features"][key].items() if k != "names"} == \
            {k: v for k, v in info_theirs["features"][key].items() if k != "names"}, key
    ours_video, theirs_video = (i["features"]["observation.images.front"] for i in (info_ours, info_theirs))
    assert set(ours_video["info"]) == set(theirs_video["info"])
    assert {k: ours_video[k] for k in ("dtype", "shape", "names")} == \
        {k: theirs_video[k] for k in ("dtype", "shape", "names")}
    stats_ours, stats_theirs = (json.loads((r / "meta/stats.json").read_text()) for r in (ours, theirs))
    assert set(stats_ours) == set(stats_theirs)
    assert all(set(stats_ours[k]) == set(stats_theirs[k]) for k in stats_ours)
