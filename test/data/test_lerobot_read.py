"""Reading LeRobotDataset v3 directories written by hand in LeRobot's documented layout:
the mapping, frames decoded at their timestamps, and every refusal naming file, key, problem."""
import json
import pickle

import numpy as np
import pytest

from genpolicy_ros.data.lerobot import LeRobotFormatError, read_lerobot
from genpolicy_ros.data.video import VideoError

from data_fixtures import FPS, LENGTHS, H, W, frame_value


def test_default_mapping_reads_state_and_action_by_name(lerobot_dir):
    meta, episodes, mapping = read_lerobot(lerobot_dir)
    assert meta.joint_names == ["j0", "j1", "j2"]  # from names: {"motors": [...]}
    assert meta.state_names == ["j0", "j1", "j2"]  # observation.state only, by default
    assert meta.cameras == {}
    assert meta.dt == pytest.approx(1 / FPS)
    assert [len(e) for e in episodes] == list(LENGTHS)  # episode 2 lives in a second data file
    for e, ep in enumerate(episodes):
        k = np.arange(LENGTHS[e])
        np.testing.assert_array_equal(ep.action, np.stack([np.full_like(k, e), k, -k], axis=1))
        np.testing.assert_array_equal(ep.state, ep.action - 0.5)
        np.testing.assert_allclose(ep.timestamp, k / FPS, atol=1e-6)
    text = mapping.describe()
    assert "fps 30" in text and "'observation.state'" in text and "['j0', 'j1', 'j2']" in text


def test_chosen_keys_give_state_order_cameras_and_frames_at_their_timestamps(lerobot_dir):
    keys = ["observation.environment_state", "observation.state", "front", "observation.images.wrist"]
    meta, episodes, mapping = read_lerobot(lerobot_dir, obs_keys=keys)
    assert meta.state_names == ["environment_state_0", "environment_state_1", "j0", "j1", "j2"]
    assert meta.cameras == {"front": [H, W], "wrist": [H, W]}
    assert mapping.cameras == {"front": "observation.images.front", "wrist": "observation.images.wrist"}
    for e, ep in enumerate(episodes):
        k = np.arange(LENGTHS[e])
        np.testing.assert_array_equal(ep.state[:, :2], np.stack([np.full_like(k, 10 * e), k], axis=1))
        want = np.array([frame_value(e, j) for j in k])  # grey level of each row's frame
        # AV1 video: lossy, but every row got its own frame (neighbours differ by 3 grey levels).
        np.testing.assert_allclose(ep.images["front"].reshape(len(k), -1).mean(axis=1), want, atol=1.2)
        np.testing.assert_array_equal(ep.images["wrist"][:, 0, 0, 0], want)  # PNG: exact
    assert "camera 'front' <- 'observation.images.front' (48x64)" in mapping.describe()


def test_images_flag_takes_every_camera_and_image_size_resizes(lerobot_dir):
    meta, episodes, mapping = read_lerobot(lerobot_dir, images=True, image_size=(24, 32))
    assert meta.cameras == {"front": [24, 32], "wrist": [24, 32]}
    assert episodes[0].images["front"].shape == (LENGTHS[0], 24, 32, 3)
    assert "resized" in mapping.describe()


def test_names_shared_by_two_state_features_are_prefixed(lerobot_factory):
    root = lerobot_factory()
    _rewrite_info(root, lambda info: info["features"]["observation.environment_state"].update(names=["j0", "z"]))
    meta, _, _ = read_lerobot(root, obs_keys=["observation.state", "observation.environment_state"])
    assert meta.state_names == ["state.j0", "state.j1", "state.j2", "environment_state.j0", "environment_state.z"]


def test_cameras_of_different_sizes_need_image_size(lerobot_factory):
    root = lerobot_factory(wrist_size=(24, 32))
    with pytest.raises(LeRobotFormatError, match="differ in size.*--image-size"):
        read_lerobot(root, images=True)
    meta, _, _ = read_lerobot(root, images=True, image_size=(24, 32))
    assert meta.cameras == {"front": [24, 32], "wrist": [24, 32]}


# --------------------------------------------------------------------------- refusals
def _rewrite_info(root, change):
    info = json.loads((root / "meta/info.json").read_text())
    change(info)
    (root / "meta/info.json").write_text(json.dumps(info))


def test_v2_data_set_is_refused_with_the_upgrade_hint(lerobot_factory):
    root = lerobot_factory(codebase_version="v2.1")
    with pytest.raises(LeRobotFormatError, match=r"info.json: codebase_version 'v2.1'.*convert_dataset_v21_to_v30"):
        read_lerobot(root)


def test_missing_info_is_refused(tmp_path):
    with pytest.raises(LeRobotFormatError, match=r"meta/info.json: missing"):
        read_lerobot(tmp_path)


def test_pickled_extension_column_is_refused_never_unpickled(lerobot_factory):
    import pyarrow as pa

    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('unpickled!')",))

    def pickled(tables):
        field = pa.field("action", pa.binary(), metadata={b"ARROW:extension:name": b"arrow.py_extension_type",
                                                          b"ARROW:extension:metadata": pickle.dumps(Boom())})
        data = tables["data"]
        col = pa.array([b"x"] * data.num_rows)
        tables["data"] = data.set_column(data.schema.get_field_index("action"), field, col)

    root = lerobot_factory(edit=pickled)
    with pytest.raises(LeRobotFormatError, match=r"file-000.parquet: column 'action' declares a pickled Python"):
        read_lerobot(root)


@pytest.mark.parametrize("problem, edit, message", [
    ("null", lambda d: _set(d, "action", 3, None), r"file-000.parquet.*column 'action' has 1 null values"),
    ("ragged", lambda d: _set(d, "action", 3, [1.0, 2.0]),
     r"file-000.parquet.*'action' row 3 has 2 values, info.json says 3"),
    ("nan", lambda d: _set(d, "action", 3, [1.0, float("nan"), 0.0]),
     r"episode_index 0.*'action' row 3 has a non-finite"),
])
def test_bad_values_are_refused_naming_file_key_and_row(lerobot_factory, problem, edit, message):
    root = lerobot_factory(edit=lambda t: t.update(data=edit(t["data"])))
    with pytest.raises(LeRobotFormatError if problem != "nan" else ValueError, match=message):
        read_lerobot(root)


def _set(table, key, row, value):
    import pyarrow as pa

    values = table.column(key).to_pylist()
    values[row] = value
    idx = table.schema.get_field_index(key)
    return table.set_column(idx, key, pa.array(values, type=table.schema.field(key).type))


def test_missing_column_is_refused(lerobot_factory):
    root = lerobot_factory(edit=lambda t: t.update(data=t["data"].drop_columns(["observation.state"])))
    with pytest.raises(LeRobotFormatError, match=r"file-000.parquet: missing columns \['observation.state'\]"):
        read_lerobot(root)


def test_unknown_and_non_numeric_keys_are_refused(lerobot_dir):
    with pytest.raises(LeRobotFormatError, match=r"info.json: no feature 'observation.velocity'"):
        read_lerobot(lerobot_dir, obs_keys=["observation.velocity"])
    with pytest.raises(LeRobotFormatError, match=r"feature 'language' \(string\) cannot be an observation"):
        read_lerobot(lerobot_dir, obs_keys=["language"])


def test_depth_video_is_refused(lerobot_factory):
    root = lerobot_factory(depth=True)
    with pytest.raises(LeRobotFormatError, match=r"'observation.images.front' is a depth map"):
        read_lerobot(root, images=True)


def test_images_stored_only_as_paths_are_refused(lerobot_factory):
    import pyarrow as pa

    def paths_only(tables):
        data = tables["data"]
        idx = data.schema.get_field_index("observation.images.wrist")
        col = pa.array([{"bytes": None, "path": "frame.png"}] * data.num_rows, type=data.schema.field(idx).type)
        tables["data"] = data.set_column(idx, "observation.images.wrist", col)

    root = lerobot_factory(edit=paths_only)
    with pytest.raises(LeRobotFormatError, match=r"'observation.images.wrist' row 0 has no embedded image bytes"):
        read_lerobot(root, obs_keys=["wrist"])


def test_episode_beyond_the_end_of_its_video_is_refused(lerobot_factory):
    import pyarrow as pa

    def late(tables):
        eps = tables["episodes"]
        key = "videos/observation.images.front/from_timestamp"
        idx = eps.schema.get_field_index(key)
        tables["episodes"] = eps.set_column(idx, key, pa.array([0.0, 0.3, 5.0]))

    root = lerobot_factory(edit=late)
    with pytest.raises(VideoError, match=r"file-000.mp4: no frame within .* of t = 5.0000 s"):
        read_lerobot(root, obs_keys=["front"])


def test_nothing_to_observe_is_refused(lerobot_dir):
    with pytest.raises(LeRobotFormatError, match="nothing to observe"):
        read_lerobot(lerobot_dir, obs_keys=[])


def test_reads_a_data_set_written_by_lerobot_itself():
    """test/data/fixtures/lerobot_0.4.4_so100: written by LeRobot 0.4.4's own writer (AV1)."""
    from pathlib import Path

    root = Path(__file__).parent / "fixtures" / "lerobot_0.4.4_so100"
    meta, episodes, mapping = read_lerobot(root, images=True)
    assert meta.joint_names == ["shoulder_pan.pos", "elbow.pos", "gripper.pos"]
    assert meta.cameras == {"front": [48, 64]} and meta.dt == pytest.approx(1 / 30)
    assert [len(e) for e in episodes] == [20, 13]
    for e, ep in enumerate(episodes):
        k = np.arange(len(ep))
        np.testing.assert_array_equal(ep.action, np.stack([np.full_like(k, e), k, -k], axis=1))
        np.testing.assert_array_equal(ep.state, ep.action - 0.5)
        np.testing.assert_allclose(ep.images["front"].reshape(len(k), -1).mean(axis=1), (40 * e + 3 * k) % 250,
                                   atol=1.5)
