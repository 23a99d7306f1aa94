"""The task registry (genpolicy_ros/tasks): specs, the env protocol, experts, a task in one module,
the task a model records and which task eval runs."""
import json
import sys
import textwrap

import numpy as np
import pytest

import genpolicy_ros.tasks as tasks
from genpolicy_ros.sim.reach_env import ensure_headless_gl
from genpolicy_ros.tasks import TaskSpec, get_task, task_names
from genpolicy_ros.tasks.model_task import model_task, resolve_eval_task

ensure_headless_gl()


def test_registry_lists_the_reach_tasks_and_names_the_known_ones_on_a_typo():
    assert {"reach", "reach_obstacle"} <= set(task_names())
    with pytest.raises(ValueError, match="unknown task 'rech'; registered tasks: .*reach"):
        get_task("rech")
    reach = get_task("reach")
    assert reach.joint_names == reach.action_names == ("shoulder", "elbow")
    assert reach.state_names == ("shoulder", "elbow", "target_x", "target_y")
    assert reach.input_names == {"target": ("target_x", "target_y")}
    assert reach.state_inputs_config() == {"target": {"type": "point", "names": ["target_x", "target_y"]}}
    assert reach.state_inputs_config(["shoulder", "elbow"]) == {}
    assert reach.camera_names == ("overhead",) and reach.control_dt == 0.05
    assert reach.episode_seed(3, 2) == 3 * 100_003 + 2
    defaults = reach.train_defaults(images=True)
    assert defaults["task"] == "reach" and defaults["cameras"] == {"overhead": None}
    assert defaults["observation_defaults"]["auxiliary"] == {"state_names": ["target_x", "target_y"]}


@pytest.mark.parametrize("name", ["reach", "reach_obstacle"])
def test_env_follows_the_protocol_and_the_expert_succeeds(name):
    """The task's env gives joints, inputs and images by the spec's names; its expert,
    started from the first observation, solves the episode (success = env.evaluate())."""
    pytest.importorskip("mujoco")
    task = get_task(name)
    env = task.make_env(render=True)
    try:
        assert (env.joint_names, env.action_names) == (task.joint_names, task.action_names)
        assert dict(env.state_inputs) == task.input_names and tuple(env.camera_names) == task.camera_names
        obs = env.reset(seed=task.episode_seed(0, 1))
        assert obs.joint_positions.shape == (len(task.joint_names),)
        assert {k: len(v) for k, v in obs.inputs.items()} == {"target": 2}
        assert obs.images["overhead"].shape == (64, 64, 3) and obs.images["overhead"].dtype == np.uint8
        np.testing.assert_array_equal(task.hold_command(obs), obs.joint_positions)
        state = task.state_vector(obs, task.state_names)  # [4] joints then target
        np.testing.assert_allclose(state[2:], env.target)
        expert = task.make_expert(obs, np.random.default_rng(0))
        assert expert.follows(obs)
        dt = task.control_dt
        for _ in range(int(round(task.defaults.episode_s / dt))):
            obs = env.step(expert.action(obs.time_s + dt), dt, with_image=False)
        result = env.evaluate()
        assert result["success"] and result["mode"] == expert.mode, result
        if name == "reach_obstacle":
            assert result["collided"] is False
        other = env.reset(seed=task.episode_seed(0, 2))
        assert not expert.follows(other), "a new target is a new episode"
    finally:
        env.close()


def test_task_spec_validates_itself():
    reach = get_task("reach")
    fields = {f: getattr(reach, f) for f in reach.__dataclass_fields__}
    with pytest.raises(ValueError, match="lower_limits must be < upper_limits"):
        TaskSpec(**dict(fields, lower_limits=(5.0, 5.0)))
    with pytest.raises(ValueError, match="one lower and upper limit per action joint"):
        TaskSpec(**dict(fields, upper_limits=(1.0,)))
    with pytest.raises(ValueError, match="overlap"):
        TaskSpec(**dict(fields, joint_names=("shoulder", "target_x")))
    with pytest.raises(ValueError, match="identifier-like"):
        TaskSpec(**dict(fields, name="my task"))


def test_adding_a_task_is_one_new_module(tmp_path, monkeypatch):
    """A module with TASKS in the package's path is registered; nothing else is edited."""
    extra = tmp_path / "extra_tasks"
    extra.mkdir()
    (extra / "toy.py").write_text(textwrap.dedent("""
        from dataclasses import replace
        from genpolicy_ros.tasks.reach import TASKS as REACH
        TASKS = (replace(REACH[0], name="toy_reach", description="a copy of reach"),)
    """))
    monkeypatch.setattr(tasks, "__path__", list(tasks.__path__) + [str(extra)])
    monkeypatch.setattr(tasks, "_registry", {})
    try:
        assert "toy_reach" in task_names() and get_task("toy_reach").action_names == ("shoulder", "elbow")
    finally:
        sys.modules.pop("genpolicy_ros.tasks.toy", None)
        tasks._registry.clear()


def test_the_task_a_model_records_and_the_one_eval_runs(tmp_path):
    def model(task=None):
        d = tmp_path / f"m_{task}"
        d.mkdir()
        meta = {"dataset": "x"} if task is None else {"dataset": "x", "task": task}
        (d / "config.json").write_text(json.dumps({"format_version": 1, "metadata": meta}))
        return d

    obstacle, old = model("reach_obstacle"), model()
    assert model_task(obstacle) == "reach_obstacle" and model_task(old) is None
    assert model_task(tmp_path / "missing") is None
    assert resolve_eval_task(obstacle, None) == "reach_obstacle"  # --obstacle is redundant
    assert resolve_eval_task(obstacle, "reach_obstacle") == "reach_obstacle"
    with pytest.raises(ValueError, match="trained on task 'reach_obstacle', not 'reach'.*--force"):
        resolve_eval_task(obstacle, "reach")
    assert resolve_eval_task(obstacle, "reach", force=True) == "reach"
    assert resolve_eval_task(old, None) == "reach" and resolve_eval_task(old, "reach_obstacle") == "reach_obstacle"


def test_genpolicy_eval_refuses_a_task_the_model_was_not_trained_on(capsys):
    from pathlib import Path

    from genpolicy_ros.cli import main

    model = Path(__file__).resolve().parents[2] / "models" / "obstacle_flow"
    assert main(["eval", str(model), "--task", "reach", "--episodes", "1"]) == 1
    assert "trained on task 'reach_obstacle', not 'reach'" in capsys.readouterr().err
    assert main(["eval", str(model), "--obstacle", "--task", "reach", "--episodes", "1"]) == 1
    assert "--obstacle is --task reach_obstacle" in capsys.readouterr().err
