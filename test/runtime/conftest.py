"""Fixtures shared by the runtime tests: a tiny saved model directory (state + one camera)."""
import pytest
import torch

from genpolicy_ros.core.checkpoint import save_model_dir
from genpolicy_ros.core.config import (
    ActionSpec,
    EncoderConfig,
    HorizonConfig,
    NetworkConfig,
    ObservationSpec,
    PolicyConfig,
)
from genpolicy_ros.core.policy import GenerativePolicy


def make_tiny_model_dir(path, *, kind: str = "flow", camera: bool = False):
    """Save a ~0.1 M-param random policy (T_o=2, T_p=8, 3 joints, 4 state dims) into ``path``."""
    obs = dict(state_names=["s0", "s1", "s2", "s3"])
    if camera:
        obs.update(camera_names=["front"], image_size=(24, 24))
    cfg = PolicyConfig(
        action=ActionSpec(joint_names=["a", "b", "c"], lower_limits=[-1.0] * 3, upper_limits=[1.0] * 3),
        observation=ObservationSpec(**obs), kind=kind, horizon=HorizonConfig(T_o=2, T_p=8, T_a=4, dt=0.05),
        network=NetworkConfig(params={"down_dims": [16, 32]}),
        encoder=EncoderConfig(params={"proprio_feature_dim": 16, "proprio_hidden": [32], "image_feature_dim": 16,
                                      "vision_width": 8, "num_keypoints": 8}))
    policy = GenerativePolicy.from_config(cfg)
    g = torch.Generator().manual_seed(0)
    policy.fit_normalizers(torch.rand(32, 8, 3, generator=g) * 2 - 1, torch.rand(32, 2, 4, generator=g) * 2)
    save_model_dir(policy, path)
    return path


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny_model"))
