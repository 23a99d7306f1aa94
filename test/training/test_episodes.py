"""Episode format: round trip, rejection of bad files, time-aligned windows with padding."""
import json
import pickle

import numpy as np
import pytest
import torch

from genpolicy_ros.data.dataset import WindowDataset, nearest_indices
from genpolicy_ros.data.episodes import (
    METADATA_FILE,
    DatasetMetadata,
    Episode,
    EpisodeDataset,
    EpisodeFormatError,
    read_episode,
    write_episode,
)

META = DatasetMetadata(joint_names=["a", "b"], state_names=["s0", "s1", "s2"], dt=0.1,
                       cameras={"front": [4, 5]})


def _episode(n=7, cams=True):
    rng = np.random.default_rng(1)
    images = {"front": rng.integers(0, 256, (n, 4, 5, 3), dtype=np.uint8)} if cams else {}
    return Episode(timestamp=10.0 + 0.1 * np.arange(n), action=rng.normal(size=(n, 2)).astype(np.float32),
                   state=rng.normal(size=(n, 3)).astype(np.float32), images=images)


def test_round_trip_is_exact(tmp_path):
    ds = EpisodeDataset.create(tmp_path / "d", META)
    ep = _episode()
    path = ds.append(ep)
    ds.append(_episode(5))
    assert path.name == "episode_000000.npz"
    assert [p.name for p in ds.episode_paths()] == ["episode_000000.npz", "episode_000001.npz"]
    back = EpisodeDataset(tmp_path / "d")
    assert back.metadata == META
    got = back[0]
    assert got.timestamp.dtype == np.float64 and got.action.dtype == np.float32 and got.state.dtype == np.float32
    np.testing.assert_array_equal(got.timestamp, ep.timestamp)
    np.testing.assert_array_equal(got.action, ep.action)
    np.testing.assert_array_equal(got.state, ep.state)
    np.testing.assert_array_equal(got.images["front"], ep.images["front"])
    assert len(back[1]) == 5


def _write_raw(path, **arrays):
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    return path


def test_pickled_object_array_is_refused_without_unpickling(tmp_path):
    marker = tmp_path / "unpickled.flag"

    class Trap:  # unpickling this would create the marker file
        def __reduce__(self):
            return (open, (str(marker), "w"))

    ep = _episode(cams=False)
    obj = np.empty(1, dtype=object)
    obj[0] = Trap()
    path = _write_raw(tmp_path / "episode_000000.npz", timestamp=ep.timestamp, action=obj, state=ep.state)
    with pytest.raises(EpisodeFormatError, match="object array.*unpickling"):
        read_episode(path)
    assert not marker.exists(), "the pickled object was executed"
    # A bare pickle file renamed to .npz is refused too.
    raw = tmp_path / "episode_000001.npz"
    raw.write_bytes(pickle.dumps(Trap()))
    with pytest.raises(EpisodeFormatError, match="not a readable .npz"):
        read_episode(raw)
    assert not marker.exists()


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: a.update(action=a["action"][:-1]), r"ragged episode: 'action' has 6 rows but 'timestamp' has 7"),
        (lambda a: a.update({"image.front": a["image.front"][:-2]}), r"ragged episode: 'image.front' has 5 frames"),
        (lambda a: a["timestamp"].__setitem__(3, a["timestamp"][2]), r"strictly increasing.*timestamp\[3\]"),
        (lambda a: a.update(timestamp=a["timestamp"][::-1].copy()), r"strictly increasing"),
        (lambda a: a["timestamp"].__setitem__(0, np.nan), r"timestamp\[0\] is not finite"),
        (lambda a: a["state"].__setitem__((2, 1), np.inf), r"'state' row 2 has a non-finite value"),
        (lambda a: a.update(state=a["state"][:, :2]), r"'state' has 2 dims but dataset.json names 3"),
        (lambda a: a.update({"image.front": a["image.front"][:, :3]}),
         r"frames are 3x5 \(HxW\) but dataset.json says 4x5"),
        (lambda a: a.update(extra=np.zeros(7)), r"unknown array 'extra'"),
        (lambda a: a.pop("state"), r"missing required arrays \['state'\]"),
        (lambda a: a.update(action=a["action"].astype(np.complex64)), r"'action' must be numeric"),
    ],
)
def test_bad_episode_files_are_rejected_with_clear_messages(tmp_path, change, message):
    ep = _episode()
    arrays = {"timestamp": ep.timestamp.copy(), "action": ep.action.copy(), "state": ep.state.copy(),
              "image.front": ep.images["front"].copy()}
    change(arrays)
    path = _write_raw(tmp_path / "episode_000000.npz", **arrays)
    with pytest.raises(EpisodeFormatError, match=message) as err:
        read_episode(path, META)
    assert str(path) in str(err.value), "the message must name the file"


def test_writer_refuses_invalid_episodes_and_metadata(tmp_path):
    ep = _episode()
    ep.timestamp[4] = ep.timestamp[3] - 1.0
    with pytest.raises(EpisodeFormatError, match="strictly increasing"):
        write_episode(tmp_path / "episode_000000.npz", ep, META)
    assert not (tmp_path / "episode_000000.npz").exists()
    with pytest.raises(EpisodeFormatError, match="dt must be finite and > 0"):
        DatasetMetadata(joint_names=["a"], state_names=[], dt=0.0)
    with pytest.raises(EpisodeFormatError, match="duplicates"):
        DatasetMetadata(joint_names=["a", "a"], state_names=[], dt=0.1)
    root = tmp_path / "bad"
    root.mkdir()
    (root / METADATA_FILE).write_text(json.dumps({"joint_names": ["a"], "state_names": [], "dt": 0.1,
                                                  "fps": 10}))
    with pytest.raises(EpisodeFormatError, match=r"unknown keys \['fps'\]"):
        EpisodeDataset(root)
    (root / METADATA_FILE).write_text(json.dumps({"joint_names": ["a"], "state_names": [], "dt": 0.1,
                                                  "format_version": 9}))
    with pytest.raises(EpisodeFormatError, match="format_version 9 is not supported"):
        EpisodeDataset(root)


def test_nearest_indices_ties_go_to_the_earlier_sample_and_clamp():
    stamps = np.array([0.0, 1.0, 2.0, 4.0])
    got = nearest_indices(stamps, np.array([-5.0, 0.4, 0.5, 0.6, 3.0, 3.1, 9.0]))
    assert got.tolist() == [0, 0, 0, 1, 2, 3, 3]


def test_windows_align_by_timestamps_and_pad_at_edges():
    meta = DatasetMetadata(joint_names=["a"], state_names=["s"], dt=0.1)
    n = 6
    # Jittered stamps (±20 % of dt) must still give the nominal-grid indices.
    jitter = np.array([0.0, 0.02, -0.015, 0.01, -0.02, 0.0])
    t = 5.0 + 0.1 * np.arange(n) + jitter
    value = np.arange(n, dtype=np.float32)[:, None]  # sample i holds the value i
    ep = Episode(timestamp=t, action=value + 100, state=value)
    ds = WindowDataset([ep], T_o=3, T_p=4, metadata=meta)  # pad_after default T_p - 1: every anchor
    assert len(ds) == n
    # Hand-computed: anchor i → obs rows clamp(i-2..i), action rows clamp(i..i+3) to [0, 5].
    for i in range(n):
        item = ds[i]
        want_obs = [min(max(j, 0), n - 1) for j in range(i - 2, i + 1)]
        want_act = [min(j, n - 1) for j in range(i, i + 4)]
        assert item["obs"]["state"][:, 0].tolist() == want_obs, f"anchor {i}"
        assert (item["action"][:, 0] - 100).tolist() == want_act, f"anchor {i}"
        assert item["obs"]["state"].shape == (3, 1) and item["action"].shape == (4, 1)
    # pad_after = 1 keeps only anchors with at most one padded action row: 0..3.
    ds1 = WindowDataset([ep], T_o=3, T_p=4, pad_after=1, metadata=meta)
    assert len(ds1) == 4
    assert (ds1[3]["action"][:, 0] - 100).tolist() == [3, 4, 5, 5]
    # A dropped frame (sample 3): rows follow time, not file order. Stamps 5.0, 5.12,
    # 5.185, 5.38, 5.5; anchor 5.185 queries 5.185, 5.285, 5.385, 5.485 → samples 2, 4, 4, 5
    # (index-based slicing would give 2, 4, 5, 5).
    keep = [0, 1, 2, 4, 5]
    gap = Episode(timestamp=t[keep], action=value[keep] + 100, state=value[keep])
    dsg = WindowDataset([gap], T_o=3, T_p=4, metadata=meta)
    assert (dsg[2]["action"][:, 0] - 100).tolist() == [2, 4, 4, 5]
    assert dsg[3]["obs"]["state"][:, 0].tolist() == [2, 2, 4]  # 5.18, 5.28 → 2; 5.38 → 4


def test_window_images_are_float_chw_in_unit_range():
    ep = _episode()
    ds = WindowDataset([ep], T_o=2, T_p=3, metadata=META)
    item = ds[0]
    img = item["obs"]["images"]["front"]
    assert img.shape == (2, 3, 4, 5) and img.dtype == torch.float32
    # Anchor 0 pads the first observation: both rows are frame 0, channels first, /255.
    want = torch.from_numpy(ep.images["front"][0]).permute(2, 0, 1).float() / 255.0
    assert torch.equal(img[0], want) and torch.equal(img[1], want)
    assert 0.0 <= float(img.min()) and float(img.max()) <= 1.0
    batch = torch.utils.data.default_collate([ds[0], ds[1]])
    assert batch["obs"]["images"]["front"].shape == (2, 2, 3, 4, 5)
    assert batch["obs"]["state"].shape == (2, 2, 3) and batch["action"].shape == (2, 3, 2)


def test_windows_pick_observed_and_auxiliary_state_entries_by_name():
    ep = _episode(n=7)
    ds = WindowDataset([ep], T_o=2, T_p=3, metadata=META, state_names=["s2", "s0"], aux_state_names=["s1"])
    full = WindowDataset([ep], T_o=2, T_p=3, metadata=META)
    for i in (0, 3, len(ds) - 1):
        rows = full[i]["obs"]["state"]  # [T_o, 3] in the data set's order s0, s1, s2
        assert torch.equal(ds[i]["obs"]["state"], rows[:, [2, 0]])
        assert torch.equal(ds[i]["aux_state"], rows[:, [1]])
        assert torch.equal(ds[i]["action"], full[i]["action"])
    assert "aux_state" not in full[0]
    np.testing.assert_array_equal(ds.all_states(), ep.state[:, [2, 0]])
    np.testing.assert_array_equal(ds.all_aux_states(), ep.state[:, [1]])
    assert full.all_aux_states() is None
    with pytest.raises(ValueError, match=r"aux_state_names \['target'\] are not in the data set's state"):
        WindowDataset([ep], T_o=2, T_p=3, metadata=META, aux_state_names=["target"])
