"""The shipped ALOHA models. State models (models/aloha_state_flow, models/aloha_state_ddim): what
they declare (task, the cube pose input, sampler, size), and a closed-loop episode in simulated
time (ROS-free) that succeeds, filmed the way the README's GIF is (``episode_gif``), on a reset
seed their demonstrations did not use. Image models (models/aloha_image_flow,
models/aloha_image_ddim): each sees the cube only in the ``top`` camera — its observation is the
14 joints and that camera, the cube pose was a training-only auxiliary target — and a
closed-loop episode (ROS-free, the camera rendered at every chunk) commands finite joints within
the limits."""
import json
from pathlib import Path

import numpy as np
import pytest

from genpolicy_ros.sim.aloha.assets import assets_available
from genpolicy_ros.tasks import get_task

MODELS = Path(__file__).resolve().parents[2] / "models"
KINDS = {"aloha_state_flow": "flow", "aloha_state_ddim": "diffusion"}
IMAGE_KINDS = {"aloha_image_flow": "flow", "aloha_image_ddim": "diffusion"}
TASK = get_task("aloha_transfer_cube")
# Evaluation seed 2 (demonstrations: seed 0, the training curve: seed 1), episode 0.
EPISODE_SEED = 2 * 100_003
needs_assets = pytest.mark.skipif(not assets_available(), reason="gym-aloha assets are not installed (make install)")


@pytest.mark.parametrize("name", sorted(KINDS))
def test_the_model_declares_its_task_inputs_and_stays_small(name):
    model = MODELS / name
    cfg = json.loads((model / "config.json").read_text())
    assert cfg["metadata"]["task"] == "aloha_transfer_cube"
    assert cfg["action"]["joint_names"] == list(TASK.action_names)
    assert cfg["observation"]["state_names"] == list(TASK.state_names)
    assert cfg["observation"]["state_inputs"] == TASK.state_inputs_config()
    assert cfg["observation"]["camera_names"] == []
    _check_sampler_size_and_curve(model, cfg, KINDS[name], min_rows=3)


@needs_assets
@pytest.mark.parametrize("name", sorted(KINDS))
def test_a_closed_loop_episode_of_the_shipped_model_succeeds_and_films(name):
    from genpolicy_ros.sim.aloha.episode_gif import record_episode

    frames, evaluation = record_episode(MODELS / name, EPISODE_SEED, camera="angle", size=(48, 64), every=100)
    assert evaluation["success"] and evaluation["mode"] == "success", evaluation
    assert evaluation["stages"] == {"grasped": True, "lifted": True, "transferred": True}
    assert frames.shape == (5, 48, 64, 3)  # after step 0, 99, 199, 299, 399
    assert frames[0].std() > 0 and abs(frames[-1].astype(float) - frames[0]).mean() > 1.0  # the arms moved

def _check_sampler_size_and_curve(model, cfg, kind, min_rows):
    """≤ 10-step sampler of ``kind``, ≤ 25 MB of weights, and a success curve that holds the
    shipped checkpoint (``min_rows`` lines, header included)."""
    assert cfg["kind"] == kind
    if kind == "flow":
        assert cfg["flow"]["default_steps"] <= 10
    else:
        assert cfg["diffusion"]["default_sampler"] == "ddim" and cfg["diffusion"]["default_steps"] <= 10
    assert (model / "model.safetensors").stat().st_size <= 25 * 2**20
    rows = (model / "success_curve.csv").read_text().splitlines()
    assert rows[0].startswith("step,episodes,seed,success") and len(rows) >= min_rows
    assert cfg["metadata"]["train_step"] in [int(r.split(",")[0]) for r in rows[1:]]  # the shipped checkpoint


@pytest.mark.parametrize("name", sorted(IMAGE_KINDS))
def test_the_image_model_sees_the_top_camera_and_observes_no_cube_pose(name):
    model = MODELS / name
    cfg = json.loads((model / "config.json").read_text())
    assert cfg["metadata"]["task"] == "aloha_transfer_cube"
    assert cfg["action"]["joint_names"] == list(TASK.action_names)
    assert cfg["observation"]["state_names"] == list(TASK.joint_names)  # the 14 joints, no cube_*
    assert cfg["observation"]["state_inputs"] == {}
    assert cfg["observation"]["camera_names"] == ["top"]
    assert cfg["auxiliary"]["state_names"] == ["cube_x", "cube_y", "cube_z"]  # training only
    _check_sampler_size_and_curve(model, cfg, IMAGE_KINDS[name], min_rows=3)


@needs_assets
@pytest.mark.parametrize("name", sorted(IMAGE_KINDS))
def test_a_closed_loop_image_episode_commands_finite_joints_within_limits(name):
    from genpolicy_ros.sim.aloha.env import AlohaTransferCubeEnv
    from genpolicy_ros.sim.aloha.offline import rollout
    from genpolicy_ros.sim.aloha.rollout_policy import ModelActor
    from genpolicy_ros.sim.reach_env import ensure_headless_gl

    ensure_headless_gl()
    actor = ModelActor(MODELS / name)
    assert actor.cameras == ("top",) and actor.task.image_size == (96, 128)
    env = AlohaTransferCubeEnv(actor.task, render=True)
    try:
        seen, chunks = [], []

        def policy(observation):
            seen.append(observation)
            chunks.append(np.asarray(actor(observation, len(seen))))  # [T_p, 14], before the roll-out clips it
            return chunks[-1]

        result = rollout(policy, env, seed=EPISODE_SEED, **actor.rollout_args)
    finally:
        env.close()
    assert len(seen) == 10 and seen[0]["images"]["top"].shape == (2, 96, 128, 3)  # 400 steps / (20 rows x 2)
    lower, upper = np.asarray(TASK.lower_limits), np.asarray(TASK.upper_limits)
    chunks = np.stack(chunks)  # [10, T_p, 14]
    assert chunks.shape == (10, 32, 14) and np.isfinite(chunks).all()
    margin = 0.05 * (upper - lower)  # raw samples may overshoot a limit a little (the grippers: 0 and 1) ...
    assert (chunks >= lower - margin).all() and (chunks <= upper + margin).all()
    assert (result.commands >= lower).all() and (result.commands <= upper).all()  # ... executed ones are clipped
    assert np.abs(result.commands[-1] - result.commands[0]).max() > 0.1  # the arms moved
