"""observation.state_inputs of the model config: schema, validation, JSON round trip, old configs."""
import json
from pathlib import Path

import pytest

from genpolicy_ros.core.config import ConfigError, PolicyConfig, check_state_inputs

REPO = Path(__file__).resolve().parents[2]
NAMES = ["shoulder", "elbow", "target_x", "target_y", "cube_x", "cube_y", "cube_z", "cube_qw"]


def _config(**observation):
    return PolicyConfig.from_dict({
        "format_version": 1,
        "action": {"joint_names": ["shoulder", "elbow"], "lower_limits": [-1, -1], "upper_limits": [1, 1]},
        "observation": {"state_names": NAMES, **observation}})


def test_round_trip_and_joint_state_names():
    inputs = {"target": {"type": "point", "names": ["target_x", "target_y"]},
              "cube_pose": {"type": "pose", "names": ["cube_x", "cube_y", "cube_z", "cube_qw"]}}
    cfg = _config(state_inputs=inputs)
    assert cfg.observation.state_inputs == inputs
    assert cfg.observation.joint_state_names == ("shoulder", "elbow")  # the rest come from the inputs
    again = PolicyConfig.from_json(cfg.to_json())
    assert again == cfg and json.loads(cfg.to_json())["observation"]["state_inputs"] == inputs


def test_old_config_without_state_inputs_loads_and_reads_everything_from_joint_state():
    cfg = _config()
    assert cfg.observation.state_inputs == {} and cfg.observation.joint_state_names == tuple(NAMES)
    assert "state_inputs" in cfg.to_dict()["observation"]


@pytest.mark.parametrize("inputs, words", [
    ({"target": {"type": "line", "names": ["target_x"]}}, "must be one of ['point', 'pose']"),
    ({"target": {"type": "point", "names": ["target_x", "target_y", "cube_x", "cube_y"]}}, "1..3 names"),
    ({"cube_pose": {"type": "pose", "names": NAMES}}, "1..7 names"),
    ({"target": {"type": "point", "names": ["nowhere"]}}, "'nowhere' is not one of the state names"),
    ({"a": {"type": "point", "names": ["target_x"]}, "b": {"type": "point", "names": ["target_x"]}},
     "already an entry of input 'a'"),
    ({"/target": {"type": "point", "names": ["target_x"]}}, "relative topic names"),
    ({"target": {"type": "point"}}, '{"type": ..., "names": [...]}'),
    ({"target": {"type": "point", "names": []}}, "1..3 names"),
    (["target"], "must be a dict"),
])
def test_invalid_state_inputs_are_refused_with_the_key(inputs, words):
    with pytest.raises(ConfigError) as exc:
        _config(state_inputs=inputs)
    assert "ObservationSpec.state_inputs" in str(exc.value) and words in str(exc.value)


def test_checker_is_shared_by_the_data_set_metadata():
    from genpolicy_ros.data.episodes import DatasetMetadata, EpisodeFormatError

    ok = DatasetMetadata(joint_names=["a"], state_names=["a", "t_x"], dt=0.1, task="reach",
                         state_inputs={"t": {"type": "point", "names": ["t_x"]}})
    assert DatasetMetadata.from_dict(json.loads(json.dumps(ok.to_dict()))) == ok
    with pytest.raises(EpisodeFormatError, match="dataset.json: state_inputs"):
        DatasetMetadata(joint_names=["a"], state_names=["a"], dt=0.1,
                        state_inputs={"t": {"type": "point", "names": ["t_x"]}})
    assert check_state_inputs({}, [], "x") == {}


def test_shipped_models_declare_the_target_input_and_their_task():
    from genpolicy_ros.core.checkpoint import read_model_config

    for model in sorted((REPO / "models").iterdir()):
        cfg, doc = read_model_config(model)
        observed = cfg.observation.state_names
        if model.name.startswith("aloha_"):
            assert doc["metadata"]["task"] == "aloha_transfer_cube", model.name
            if cfg.observation.camera_names:  # an image model sees the cube in the camera only
                assert cfg.observation.state_inputs == {}, model.name
                continue
            names = ["cube_x", "cube_y", "cube_z", "cube_qw", "cube_qx", "cube_qy", "cube_qz"]
            assert cfg.observation.state_inputs == {"cube_pose": {"type": "pose", "names": names}}  # a PoseStamped
            continue
        if "target_x" in observed:
            assert cfg.observation.state_inputs == {"target": {"type": "point", "names": ["target_x", "target_y"]}}
        else:  # the image model sees the target in the camera
            assert cfg.observation.state_inputs == {}
        want = "reach_obstacle" if model.name.startswith("obstacle_") else "reach"
        assert doc["metadata"]["task"] == want, model.name
