"""`genpolicy export`: builds engines into the cache, reuses them, refuses what cannot exist."""
import json

import pytest

from genpolicy_ros import cli
from genpolicy_ros.core.checkpoint import save_model_dir
from genpolicy_ros.core.config import ActionSpec, HorizonConfig, NetworkConfig, ObservationSpec, PolicyConfig
from genpolicy_ros.core.policy import GenerativePolicy


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    cfg = PolicyConfig(
        action=ActionSpec(joint_names=("a", "b"), lower_limits=(-1.0, -1.0), upper_limits=(1.0, 1.0)),
        observation=ObservationSpec(state_names=("a", "b")),
        horizon=HorizonConfig(T_o=2, T_p=8, T_a=4, dt=0.1),
        network=NetworkConfig(name="unet1d", params={"down_dims": [16, 32]}),
    )
    policy = GenerativePolicy.from_config(cfg)
    path = tmp_path_factory.mktemp("export") / "model"
    save_model_dir(policy, path)
    return path


def test_export_builds_an_onnx_engine_and_a_second_run_hits_the_cache(model_dir, tmp_path, capsys):
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    out = tmp_path / "built.json"
    assert cli.main(["export", str(model_dir), "--backend", "onnxruntime", "--steps", "3", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["built"][0]["backend"] == "onnxruntime" and report["built"][0]["num_steps"] == 3
    entries = report["cache"]
    assert entries, "nothing was stored in the engine cache"
    assert (model_dir / "engines").is_dir()
    capsys.readouterr()
    assert cli.main(["export", str(model_dir), "--backend", "onnxruntime", "--steps", "3"]) == 0
    assert f"{len(entries)} entr" in capsys.readouterr().out, "a second export must reuse, not add, entries"


def test_export_reports_an_unavailable_backend_and_a_bad_model(model_dir, tmp_path, capsys):
    import torch

    if not torch.cuda.is_available():
        assert cli.main(["export", str(model_dir), "--backend", "tensorrt", "--device", "cuda"]) == 1
        assert "unavailable" in capsys.readouterr().err
    bad = tmp_path / "missing"
    assert cli.main(["export", str(bad)]) == 1
    assert "genpolicy export:" in capsys.readouterr().err


def test_export_auto_measures_the_candidates_and_auto_uses_the_fastest(model_dir, tmp_path, capsys):
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    from genpolicy_ros.core.checkpoint import load_model_dir
    from genpolicy_ros.runtime.backends import create_backend
    from genpolicy_ros.runtime.backends.choice import recorded_choice

    cache = tmp_path / "engines"
    out = tmp_path / "built.json"
    assert cli.main(["export", str(model_dir), "--cache-dir", str(cache), "--steps", "3", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    report = json.loads(out.read_text())
    choice = report["auto_choice"]
    assert choice in {b["backend"] for b in report["built"]} and choice != "eager"
    assert f"auto will use {choice}" in text and "ms per chunk" in text
    assert recorded_choice(cache, "cpu", 1, "fp32") == choice
    assert recorded_choice(cache, "cpu", 2, "fp32") is None, "the choice is per thread count"
    auto = create_backend("auto", load_model_dir(model_dir), "cpu", cache, num_threads=1)
    assert auto.order[0] == choice


def test_a_recorded_choice_goes_first_and_says_so(model_dir, tmp_path):
    from genpolicy_ros.core.checkpoint import load_model_dir
    from genpolicy_ros.runtime.backends import SamplerSettings, create_backend
    from genpolicy_ros.runtime.backends.choice import record_choice

    record_choice(tmp_path, "cpu", 1, "fp32", "eager", {"eager": 1.0}, "test")
    auto = create_backend("auto", load_model_dir(model_dir), "cpu", tmp_path, num_threads=1)
    auto.prepare(SamplerSettings(num_steps=2), {"state": __import__("torch").zeros(1, 2, 2)})
    assert auto.chosen_name == "eager" and "measured choice" in auto.describe()
