"""The shipped ALOHA state models (models/aloha_state_flow, models/aloha_state_ddim): what they
declare (task, the cube pose input, sampler, size), and a closed-loop episode in simulated time
(ROS-free) that succeeds, filmed the way the README's GIF is (``episode_gif``), on a reset seed
their demonstrations did not use."""
import json
from pathlib import Path

import pytest

from genpolicy_ros.sim.aloha.assets import assets_available
from genpolicy_ros.tasks import get_task

MODELS = Path(__file__).resolve().parents[2] / "models"
KINDS = {"aloha_state_flow": "flow", "aloha_state_ddim": "diffusion"}
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
    assert cfg["kind"] == KINDS[name]
    if KINDS[name] == "flow":
        assert cfg["flow"]["default_steps"] <= 10
    else:
        assert cfg["diffusion"]["default_sampler"] == "ddim" and cfg["diffusion"]["default_steps"] <= 10
    assert (model / "model.safetensors").stat().st_size <= 25 * 2**20
    rows = (model / "success_curve.csv").read_text().splitlines()
    assert rows[0].startswith("step,episodes,seed,success") and len(rows) >= 3
    assert cfg["metadata"]["train_step"] in [int(r.split(",")[0]) for r in rows[1:]]  # the shipped checkpoint


@needs_assets
@pytest.mark.parametrize("name", sorted(KINDS))
def test_a_closed_loop_episode_of_the_shipped_model_succeeds_and_films(name):
    from genpolicy_ros.sim.aloha.episode_gif import record_episode

    frames, evaluation = record_episode(MODELS / name, EPISODE_SEED, camera="angle", size=(48, 64), every=100)
    assert evaluation["success"] and evaluation["mode"] == "success", evaluation
    assert evaluation["stages"] == {"grasped": True, "lifted": True, "transferred": True}
    assert frames.shape == (5, 48, 64, 3)  # after step 0, 99, 199, 299, 399
    assert frames[0].std() > 0 and abs(frames[-1].astype(float) - frames[0]).mean() > 1.0  # the arms moved
