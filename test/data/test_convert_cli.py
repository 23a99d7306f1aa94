"""``genpolicy convert`` and ``genpolicy train --lerobot / --robomimic`` as a user runs them."""
import json

import numpy as np
import pytest

from genpolicy_ros import cli
from genpolicy_ros.data.episodes import DatasetMetadata, Episode, EpisodeDataset, write_dataset

TINY = {"policy": {"horizon": {"T_o": 2, "T_p": 4, "T_a": 2},
                   "network": {"name": "unet1d", "params": {"down_dims": [8, 16], "kernel_size": 3,
                                                            "time_embed_dim": 8}},
                   "encoder": {"params": {"proprio_feature_dim": 8, "proprio_hidden": [16], "image_feature_dim": 8,
                                          "vision_width": 4, "num_keypoints": 4}}},
        "train": {"steps": 3, "batch_size": 4, "save_every": 0, "log_every": 1}}


def _episode_set(root, cameras=True):
    rng = np.random.default_rng(0)
    meta = DatasetMetadata(joint_names=["a", "b"], state_names=["a", "b", "c"], dt=0.1,
                           cameras={"front": [16, 16]} if cameras else {})
    eps = []
    for n in (12, 9):
        images = {"front": rng.integers(0, 256, (n, 16, 16, 3), dtype=np.uint8)} if cameras else {}
        eps.append(Episode(5.0 + 0.1 * np.arange(n), rng.normal(size=(n, 2)).astype(np.float32),
                           rng.normal(size=(n, 3)).astype(np.float32), images))
    write_dataset(root, meta, eps)
    return root


def _config(tmp_path):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(TINY))
    return str(path)


def test_convert_episodes_to_lerobot_and_back(tmp_path, capsys):
    src = _episode_set(tmp_path / "eps")
    assert cli.main(["convert", "--data", str(src), "--to", "lerobot", "--out", str(tmp_path / "lr"),
                     "--task", "pick", "--robot-type", "arm"]) == 0
    assert "wrote LeRobotDataset v3.0" in capsys.readouterr().out
    assert json.loads((tmp_path / "lr/meta/info.json").read_text())["robot_type"] == "arm"
    assert cli.main(["convert", "--lerobot", str(tmp_path / "lr"), "--images", "--to", "episodes",
                     "--out", str(tmp_path / "back")]) == 0
    captured = capsys.readouterr()
    assert "camera 'front' <- 'observation.images.front'" in captured.err  # the mapping is printed
    a, b = EpisodeDataset(src), EpisodeDataset(tmp_path / "back")
    assert b.metadata.joint_names == ["a", "b"] and b.metadata.cameras == {"front": [16, 16]}
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.action, y.action)
        np.testing.assert_array_equal(x.state, y.state)


def test_convert_refuses_ambiguous_or_bad_input(tmp_path, capsys):
    src = _episode_set(tmp_path / "eps")
    assert cli.main(["convert", "--data", str(src), "--lerobot", str(src), "--to", "lerobot",
                     "--out", str(tmp_path / "x")]) == 2
    assert "exactly one source" in capsys.readouterr().err
    assert cli.main(["convert", "--lerobot", str(src), "--to", "episodes", "--out", str(tmp_path / "y")]) == 1
    assert "meta/info.json: missing" in capsys.readouterr().err
    assert cli.main(["convert", "--data", str(src), "--to", "lerobot", "--out", str(src)]) == 2
    assert "not an empty directory" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["convert", "--data", str(src), "--to", "lerobot", "--out", str(tmp_path / "z"),
                  "--image-size", "big"])
    assert "image size must be HxW" in capsys.readouterr().err


def test_train_on_a_lerobot_data_set(tmp_path, capsys):
    src = _episode_set(tmp_path / "eps")
    assert cli.main(["convert", "--data", str(src), "--to", "lerobot", "--out", str(tmp_path / "lr")]) == 0
    out = tmp_path / "run"
    assert cli.main(["train", "--lerobot", str(tmp_path / "lr"), "--images", "--config", _config(tmp_path),
                     "--out", str(out), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "LeRobotDataset" in err and "action  <- 'action': joints ['a', 'b']" in err
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["action"]["joint_names"] == ["a", "b"] and cfg["observation"]["camera_names"] == ["front"]
    assert cfg["horizon"]["dt"] == pytest.approx(0.1)
    assert (out / "model.safetensors").is_file() and EpisodeDataset(out / "dataset").metadata.state_dim == 3


def test_train_on_a_robomimic_file(tmp_path, robomimic_file, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", "--robomimic", str(robomimic_file), "--mask", "train", "--obs-keys",
                     "robot0_eef_pos,agentview_image", "--image-size", "32x32", "--config", _config(tmp_path),
                     "--out", str(out), "--no-progress"]) == 0
    assert "robomimic" in capsys.readouterr().err
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["action"]["joint_names"] == ["action_0", "action_1", "action_2", "action_3"]
    assert cfg["observation"]["state_names"] == ["robot0_eef_pos_0", "robot0_eef_pos_1", "robot0_eef_pos_2"]
    assert cfg["observation"]["camera_names"] == ["agentview"] and cfg["observation"]["image_size"] == [32, 32]
    assert len(EpisodeDataset(out / "dataset")) == 2  # mask/train


def test_train_refuses_two_sources_and_reports_conversion_errors(tmp_path, robomimic_file, capsys):
    assert cli.main(["train", "--robomimic", str(robomimic_file), "--data", str(tmp_path), "--out",
                     str(tmp_path / "r")]) == 2
    assert "give one data source" in capsys.readouterr().err
    assert cli.main(["train", "--robomimic", str(robomimic_file), "--obs-keys", "nope", "--out",
                     str(tmp_path / "r")]) == 1
    assert "error converting --robomimic" in capsys.readouterr().err
    assert cli.main(["train", "--lerobot", str(tmp_path), "--mask", "train", "--out", str(tmp_path / "r")]) == 1
    assert "--mask applies to --robomimic only" in capsys.readouterr().err
