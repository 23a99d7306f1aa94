"""The generating side: run-time sampler changes keep the fast path, latency emulation,
path reporting, progress lines, and where engines are cached."""
import os
import time

import numpy as np
import pytest

from genpolicy_ros.runtime.backends import BACKENDS
from genpolicy_ros.runtime.backends.cache import default_cache_dir, model_digest
from genpolicy_ros.runtime.generation_worker import (
    GenerationRequest,
    GenerationWorker,
    ThreadGenerationWorker,
    WorkerConfig,
    WorkerError,
)
from genpolicy_ros.runtime.generation_worker.session import GenerationSession
from genpolicy_ros.runtime.sampler_settings import SamplerSettings

FLOW10, FLOW4 = SamplerSettings(sampler="flow", num_steps=10), SamplerSettings(sampler="flow", num_steps=4)


def obs(seed=0):
    return {"state": np.random.default_rng(seed).uniform(0, 2, (2, 4)).astype(np.float32)}  # [T_o, D_s]


def request(seq, settings, **kw):
    return GenerationRequest(seq=seq, obs=obs(seq), t0=0.0, settings=settings, seed=seq, **kw)


def need_onnx():
    ok, why = BACKENDS["onnxruntime"].available("cpu")
    if not ok:
        pytest.skip(why)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("engines"))


@pytest.mark.parametrize("switch", ["after_build", "immediate"])
def test_runtime_sampler_change_builds_the_new_graph_and_switches(tiny_model_dir, cache_dir, switch):
    need_onnx()
    lines = []
    session = GenerationSession(WorkerConfig(model_dir=str(tiny_model_dir), backend="onnxruntime", settings=FLOW10,
                                             cache_dir=cache_dir, settings_switch=switch), progress=lines.append)
    try:
        assert session.wait_builds(120), "the per-step fallback is built in the background after the start"
        assert any("per-step denoiser" in line for line in lines), lines
        _, meta = session.generate(request(1, FLOW10), obs(1))
        assert meta["path"] == "graph" and meta["settings"] == "flow-10" and meta["pending_settings"] is None
        assert meta["graph_build_s"] is not None and meta["graph_build_s"] > 0
        # num_steps changed at run time: a graph backend builds flow-4 in the background
        _, meta = session.generate(request(2, FLOW4), obs(2))
        assert meta["pending_settings"] == "flow-4" and meta["requested_settings"] == "flow-4"
        if switch == "after_build":  # the old graph keeps serving the old settings meanwhile
            assert (meta["settings"], meta["path"]) == ("flow-10", "graph")
        else:  # the new settings at once, on the per-step fallback path
            assert meta["settings"] == "flow-4" and meta["path"].startswith("per_step: ")
        assert session.wait_builds(120), "the background build did not finish"
        actions, meta = session.generate(request(3, FLOW4), obs(3))
        assert (meta["settings"], meta["path"], meta["pending_settings"]) == ("flow-4", "graph", None)
        assert meta["graph_build_s"] > 0
        assert any("building the flow-4 graph in the background" in line for line in lines), lines
        assert any("flow-4 graph ready" in line for line in lines), lines
        # the switched graph computes the eager chunk for these settings
        ref = session.backend.eager_sample(__import__("genpolicy_ros.runtime.generation_worker",
                                                      fromlist=["to_policy_obs"]).to_policy_obs(obs(3)),
                                           __import__("genpolicy_ros.runtime.backends",
                                                      fromlist=["make_noise"]).make_noise((1, 8, 3), 3),
                                           FLOW4.resolved(session.policy), reference=True)
        assert np.abs(actions - ref[0].numpy()).max() < 1e-4
    finally:
        session.close()


def test_settings_a_graph_cannot_express_are_served_at_once_without_a_build(tiny_model_dir, cache_dir):
    need_onnx()
    session = GenerationSession(WorkerConfig(model_dir=str(tiny_model_dir), backend="onnxruntime", settings=FLOW10,
                                             cache_dir=cache_dir))
    try:
        assert session.wait_builds(120)
        guided = request(2, FLOW10, prefix_actions=np.zeros((3, 3)), prefix_mode="guided")
        _, meta = session.generate(guided, obs(2))
        assert meta["path"].startswith("eager: prefix_mode=guided") and meta["pending_settings"] is None
        assert session.wait_builds(1.0)
    finally:
        session.close()


def test_eager_backend_serves_any_settings_directly(tiny_model_dir):
    session = GenerationSession(WorkerConfig(model_dir=str(tiny_model_dir), backend="eager", settings=FLOW10))
    try:
        _, meta = session.generate(request(1, FLOW4), obs(1))
        assert (meta["settings"], meta["path"], meta["pending_settings"]) == ("flow-4", "eager", None)
    finally:
        session.close()


def test_latency_emulation_is_off_by_default_and_sets_a_floor(tiny_model_dir):
    with ThreadGenerationWorker(WorkerConfig(model_dir=str(tiny_model_dir), backend="eager", settings=FLOW4)) as w:
        assert w.wait_ready(60)
        w.submit(request(1, FLOW4))
        chunk = wait_event(w)
        assert chunk.meta["emulate_latency_ms"] == 0.0 and "emulation_sleep_s" not in chunk.meta
    cfg = WorkerConfig(model_dir=str(tiny_model_dir), backend="eager", settings=FLOW4, emulate_latency_ms=150.0,
                       emulate_jitter_ms=20.0, emulate_seed=3)
    w = GenerationWorker(cfg)
    try:
        assert w.wait_ready(60)
        assert w.info["emulate_latency_ms"] == 150.0
        targets = []
        for seq in range(1, 5):
            w.submit(request(seq, FLOW4))
            chunk = wait_event(w)
            target = chunk.meta["emulate_latency_ms"]
            targets.append(target)
            assert 130.0 <= target <= 170.0, target
            # the child replies no earlier than the emulated figure (measured from its receipt)
            assert chunk.meta["request_latency_s"] * 1e3 >= target
            assert chunk.meta["emulation_sleep_s"] > 0
        assert len(set(targets)) == len(targets), "jitter draws a new figure per chunk"
        assert w.active_path["emulate_latency_ms"] == targets[-1]
    finally:
        w.close()


def wait_event(worker, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        event = worker.poll()
        if event is not None:
            assert not isinstance(event, WorkerError), event
            return event
        time.sleep(0.005)
    raise AssertionError(f"no event within {timeout} s")


def test_emulation_config_is_validated():
    with pytest.raises(ValueError, match="emulate_latency_ms"):
        WorkerConfig(model_dir="m", emulate_latency_ms=-1.0)
    with pytest.raises(ValueError, match="must not exceed"):
        WorkerConfig(model_dir="m", emulate_latency_ms=10.0, emulate_jitter_ms=20.0)
    with pytest.raises(ValueError, match="request_timeout_s"):
        WorkerConfig(model_dir="m", emulate_latency_ms=5000.0, request_timeout_s=5.0)
    with pytest.raises(ValueError, match="precision"):
        WorkerConfig(model_dir="m", precision="int8")
    with pytest.raises(ValueError, match="settings_switch"):
        WorkerConfig(model_dir="m", settings_switch="later")


def test_fp16_on_the_cpu_is_refused_with_a_reason(tiny_model_dir):
    w = GenerationWorker(WorkerConfig(model_dir=str(tiny_model_dir), backend="eager", precision="fp16",
                                      max_start_failures=1))
    try:
        assert not w.wait_ready(60)
        err = w.poll()
        assert isinstance(err, WorkerError) and err.kind == "start_failed"
        assert "fp16 needs a CUDA device" in err.message
    finally:
        w.close()


def test_process_worker_forwards_progress_and_path_stats(tiny_model_dir, tmp_path):
    need_onnx()
    lines = []
    w = GenerationWorker(WorkerConfig(model_dir=str(tiny_model_dir), backend="onnxruntime", settings=FLOW4,
                                      cache_dir=str(tmp_path)), on_progress=lines.append)
    try:
        assert w.wait_ready(120), w.poll()
        assert any(line.startswith("onnxruntime: exporting the flow-4 sampler") for line in lines), lines
        assert any("`genpolicy export MODEL` builds them ahead of time" in line for line in lines), lines
        w.submit(request(1, FLOW4))
        chunk = wait_event(w)
        assert chunk.meta["path"] == "graph" and w.stats["path:graph"] == 1
        assert w.active_path["backend"].startswith("onnxruntime") and w.active_path["settings"] == "flow-4"
    finally:
        w.close()


def test_engines_of_an_installed_model_go_to_the_user_cache(tmp_path, monkeypatch, tiny_model_dir):
    installed = tmp_path / "install" / "share" / "genpolicy_ros" / "models" / "m"
    installed.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        (installed / name).write_bytes((tiny_model_dir / name).read_bytes())
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    where = default_cache_dir(installed)
    assert where == tmp_path / "xdg" / "genpolicy_ros" / "engines" / model_digest(installed)
    assert not (installed / "engines").exists(), "nothing is written into an installed model"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir(installed) == tmp_path / "home" / ".cache" / "genpolicy_ros" / "engines" / \
        model_digest(installed)
    # a working copy keeps its engines beside the weights
    assert default_cache_dir(tiny_model_dir) == tiny_model_dir / "engines"
    # the per-model folder follows the weights
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_bytes((installed / "config.json").read_bytes())
    (other / "model.safetensors").write_bytes((installed / "model.safetensors").read_bytes() + b" ")
    assert model_digest(other) != model_digest(installed)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere: a read-only directory needs a normal user")
def test_engines_of_a_read_only_model_go_to_the_user_cache(tmp_path, monkeypatch, tiny_model_dir):
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "config.json").write_bytes((tiny_model_dir / "config.json").read_bytes())
    ro.chmod(0o555)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    try:
        assert default_cache_dir(ro).parent == tmp_path / "xdg" / "genpolicy_ros" / "engines"
    finally:
        ro.chmod(0o755)
