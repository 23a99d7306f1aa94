"""The shipped ALOHA state model (models/aloha_state_flow): what it declares (task, the cube
pose input, size), and a closed-loop episode in simulated time (ROS-free) that succeeds,
filmed the way the README's GIF is (``episode_gif``), on a reset seed its demonstrations
did not use."""
import json
from pathlib import Path

import pytest

from genpolicy_ros.sim.aloha.assets import assets_available
from genpolicy_ros.tasks import get_task

MODEL = Path(__file__).resolve().parents[2] / "models" / "aloha_state_flow"
TASK = get_task("aloha_transfer_cube")
# Evaluation seed 2 (demonstrations: seed 0, the training curve: seed 1), episode 0.
EPISODE_SEED = 2 * 100_003
needs_assets = pytest.mark.skipif(not assets_available(), reason="gym-aloha assets are not installed (make install)")


def test_the_model_declares_its_task_inputs_and_stays_small():
    cfg = json.loads((MODEL / "config.json").read_text())
    assert cfg["metadata"]["task"] == "aloha_transfer_cube"
    assert cfg["action"]["joint_names"] == list(TASK.action_names)
    assert cfg["observation"]["state_names"] == list(TASK.state_names)
    assert cfg["observation"]["state_inputs"] == TASK.state_inputs_config()
    assert cfg["observation"]["camera_names"] == []
    assert cfg["kind"] == "flow" and cfg["flow"]["default_steps"] <= 10
    assert (MODEL / "model.safetensors").stat().st_size <= 25 * 2**20
    rows = (MODEL / "success_curve.csv").read_text().splitlines()
    assert rows[0].startswith("step,episodes,seed,success") and len(rows) >= 3
    assert int(rows[-1].split(",")[0]) == cfg["metadata"]["train_step"]


@needs_assets
def test_a_closed_loop_episode_of_the_shipped_model_succeeds_and_films():
    from genpolicy_ros.sim.aloha.episode_gif import record_episode

    frames, evaluation = record_episode(MODEL, EPISODE_SEED, camera="angle", size=(48, 64), every=100)
    assert evaluation["success"] and evaluation["mode"] == "success", evaluation
    assert evaluation["stages"] == {"grasped": True, "lifted": True, "transferred": True}
    assert frames.shape == (5, 48, 64, 3)  # after step 0, 99, 199, 299, 399
    assert frames[0].std() > 0 and abs(frames[-1].astype(float) - frames[0]).mean() > 1.0  # the arms moved
