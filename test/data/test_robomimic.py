"""Reading robomimic HDF5 files written with h5py in robomimic's documented layout."""
import json

import numpy as np
import pytest

from genpolicy_ros.data.robomimic import RobomimicFormatError, read_robomimic

from data_fixtures import ROBOMIMIC_LENGTHS


def test_default_reads_every_low_dim_key_in_demo_order_with_dt_from_env_args(robomimic_file):
    meta, episodes, mapping = read_robomimic(robomimic_file)
    assert meta.joint_names == ["action_0", "action_1", "action_2", "action_3"]
    assert meta.state_names == ["robot0_eef_pos_0", "robot0_eef_pos_1", "robot0_eef_pos_2", "robot0_gripper_qpos"]
    assert meta.cameras == {}
    assert meta.dt == pytest.approx(0.05) and mapping.dt_source == "data.attrs env_args control_freq"
    assert [len(e) for e in episodes] == list(ROBOMIMIC_LENGTHS)
    for i, ep in enumerate(episodes):
        k = np.arange(ROBOMIMIC_LENGTHS[i])
        np.testing.assert_array_equal(ep.action, np.stack([np.full_like(k, i), k, 0.5 * k, -k], axis=1))
        np.testing.assert_allclose(ep.state[:, :3], np.stack([np.full_like(k, i), k, np.ones_like(k)], axis=1))
        np.testing.assert_allclose(ep.timestamp, 0.05 * k)
    assert "robomimic" in mapping.describe() and "'obs/robot0_gripper_qpos'" in mapping.describe()


def test_obs_keys_choose_state_order_and_cameras(robomimic_file):
    meta, episodes, mapping = read_robomimic(robomimic_file, obs_keys=["robot0_gripper_qpos", "agentview_image"],
                                             dt=0.1)
    assert meta.state_names == ["robot0_gripper_qpos"]
    assert meta.cameras == {"agentview": [8, 10]} and mapping.cameras == {"agentview": "agentview_image"}
    assert meta.dt == pytest.approx(0.1) and mapping.dt_source == "given"
    np.testing.assert_array_equal(episodes[2].images["agentview"][:, 0, 0, 0], 20 + np.arange(9))
    _, _, by_camera = read_robomimic(robomimic_file, obs_keys=["agentview"], image_size=(4, 6))
    assert by_camera.cameras == {"agentview": "agentview_image"} and by_camera.image_size == (4, 6)


def test_mask_selects_a_split_and_images_flag_adds_cameras(robomimic_file):
    meta, episodes, mapping = read_robomimic(robomimic_file, split="train", images=True)
    assert mapping.demos == ["demo_0", "demo_2"] and [len(e) for e in episodes] == [7, 9]
    assert meta.cameras == {"agentview": [8, 10]}
    assert "mask/train" in mapping.describe()


def test_dt_defaults_to_20_hz_without_control_freq(robomimic_factory):
    path = robomimic_factory(env_args={"env_name": "Lift"})
    meta, _, mapping = read_robomimic(path)
    assert meta.dt == pytest.approx(0.05) and "default" in mapping.dt_source


def test_demos_sort_numerically(robomimic_factory):
    def more(f):
        g = f["data"].create_group("demo_10")
        g["actions"] = np.zeros((2, 4))
        o = g.create_group("obs")
        o["robot0_eef_pos"], o["robot0_gripper_qpos"] = np.zeros((2, 3)), np.zeros((2, 1))
        o["agentview_image"] = np.zeros((2, 8, 10, 3), np.uint8)

    _, _, mapping = read_robomimic(robomimic_factory(edit=more))
    assert mapping.demos == ["demo_0", "demo_1", "demo_2", "demo_10"]


# --------------------------------------------------------------------------- refusals
def _vlen(f):
    import h5py

    del f["data/demo_1/obs/robot0_gripper_qpos"]
    ds = f["data/demo_1/obs"].create_dataset("robot0_gripper_qpos", (5,), dtype=h5py.vlen_dtype(np.float64))
    for i in range(5):
        ds[i] = np.arange(i + 1, dtype=np.float64)


def _strings(f):
    del f["data/demo_0/actions"]
    f["data/demo_0"]["actions"] = np.array([b"pickled?"] * 7)


def _ragged(f):
    del f["data/demo_2/obs/robot0_eef_pos"]
    f["data/demo_2/obs"]["robot0_eef_pos"] = np.zeros((8, 3))


def _nan(f):
    f["data/demo_1/actions"][2, 1] = np.nan


def _count(f):
    f["data/demo_1"].attrs["num_samples"] = 6


@pytest.mark.parametrize("edit, message", [
    (_vlen, r"'data/demo_1/obs/robot0_gripper_qpos' holds object / variable-length / string data"),
    (_strings, r"'data/demo_0/actions' holds object / variable-length / string data"),
    (_ragged, r"'data/demo_2/obs/robot0_eef_pos' has 8 rows but 'data/demo_2/actions' has 9"),
    (_nan, r"data/demo_1'\): 'action' row 2 has a non-finite value"),
    (_count, r"'data/demo_1' attrs num_samples = 6 but it holds 5 rows"),
])
def test_bad_arrays_are_refused_naming_file_and_key(robomimic_factory, edit, message):
    path = robomimic_factory(edit=edit)
    with pytest.raises(ValueError, match=message) as info:
        read_robomimic(path)
    assert str(path) in str(info.value)


def test_structure_refusals(robomimic_file, tmp_path):
    with pytest.raises(RobomimicFormatError, match="no obs key 'velocity'"):
        read_robomimic(robomimic_file, obs_keys=["velocity"])
    with pytest.raises(RobomimicFormatError, match=r"no split 'mask/test' \(splits: \['train', 'valid'\]\)"):
        read_robomimic(robomimic_file, split="test")
    with pytest.raises(RobomimicFormatError, match="nothing to observe"):
        read_robomimic(robomimic_file, obs_keys=[])
    with pytest.raises(RobomimicFormatError, match="3 action names given for 4-dimensional actions"):
        read_robomimic(robomimic_file, action_names=["a", "b", "c"])
    not_hdf5 = tmp_path / "x.hdf5"
    not_hdf5.write_bytes(b"not an hdf5 file")
    with pytest.raises(RobomimicFormatError, match=r"x.hdf5: not a readable HDF5 file"):
        read_robomimic(not_hdf5)
    import h5py

    with h5py.File(tmp_path / "empty.hdf5", "w") as f:
        f.create_group("data").attrs["env_args"] = json.dumps({})
    with pytest.raises(RobomimicFormatError, match=r"empty.hdf5: 'data' holds no demo_N groups"):
        read_robomimic(tmp_path / "empty.hdf5")
    with h5py.File(tmp_path / "other.hdf5", "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(RobomimicFormatError, match=r"other.hdf5: no 'data' group"):
        read_robomimic(tmp_path / "other.hdf5")
