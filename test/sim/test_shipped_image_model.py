"""The shipped image+proprio model sees the target: it is not given its position."""
from pathlib import Path

import numpy as np
import pytest
import torch

from genpolicy_ros.sim.reach_env import ensure_headless_gl

ensure_headless_gl()  # before the first `import mujoco`
mujoco = pytest.importorskip("mujoco")

from genpolicy_ros.core.checkpoint import load_model_dir  # noqa: E402
from genpolicy_ros.runtime.generation_worker import to_policy_obs  # noqa: E402
from genpolicy_ros.sim.offline import rollout  # noqa: E402
from genpolicy_ros.sim.reach_env import ReachEnv  # noqa: E402

MODEL = Path(__file__).resolve().parents[2] / "models" / "reach_image_flow"


@pytest.fixture(scope="module")
def policy():
    torch.set_num_threads(1)
    return load_model_dir(MODEL).eval()


def test_observes_the_arm_and_the_camera_only(policy):
    cfg = policy.config
    assert cfg.observation.state_names == ("shoulder", "elbow")
    assert cfg.observation.camera_names == ("overhead",) and cfg.observation.image_size == (64, 64)
    assert cfg.auxiliary.state_names == ("target_x", "target_y")


def test_locates_targets_it_was_not_told_about_from_the_rendered_frame(policy):
    env = ReachEnv(render=True)
    try:
        errors = []
        for seed in range(900, 906):  # seeds outside the demonstrations' range
            first = env.reset(seed=seed)
            obs = to_policy_obs({"state": np.stack([first.joint_positions[:2]] * 2).astype(np.float32),  # [T_o, 2]
                                 "images": {"overhead": np.stack([first.image, first.image])}})  # [T_o, H, W, 3]
            estimate = policy.predict_aux_state(obs)[0, -1].numpy()  # [2] metres
            errors.append(float(np.linalg.norm(estimate - env.target)))
    finally:
        env.close()
    assert np.median(errors) < 0.01, f"target estimates off by {np.round(errors, 4)} m"


def test_two_closed_loop_episodes_reach_their_targets(policy):
    cfg = policy.config
    for seed in (901, 902):
        arm_only = lambda obs: policy.sample(to_policy_obs(  # noqa: E731 - the model sees no target joints
            {"state": obs["state"][:, :2], "images": obs["images"]}), seed=seed)[0].numpy()
        result = rollout(arm_only,
            seed=seed, T_o=cfg.horizon.T_o, action_horizon=cfg.horizon.T_a, dt=cfg.horizon.dt, with_images=True)
        assert result.success, f"seed {seed}: ended {1000 * result.final_distance:.1f} mm from the target"
