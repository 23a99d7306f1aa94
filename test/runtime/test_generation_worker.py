"""Generation worker: a child process that serves chunks, survives crashes, hangs and bad input."""
import multiprocessing as mp
import os
import signal
import time

import numpy as np
import pytest
import torch

from genpolicy_ros.core.checkpoint import load_model_dir, save_model_dir
from genpolicy_ros.core.config import (
    ActionSpec,
    EncoderConfig,
    HorizonConfig,
    NetworkConfig,
    ObservationSpec,
    PolicyConfig,
)
from genpolicy_ros.core.policy import GenerativePolicy
from genpolicy_ros.runtime.backends import SamplerSettings, make_noise
from genpolicy_ros.runtime.chunk import ActionChunk
from genpolicy_ros.runtime.generation_worker import (
    GenerationRequest,
    GenerationWorker,
    ThreadGenerationWorker,
    WorkerConfig,
    WorkerError,
    WorkerState,
    obs_from_snapshot,
)
from genpolicy_ros.runtime.latency import LatencyTracker

T_O, T_P, D_A, D_S, H, W = 2, 8, 3, 4, 24, 24


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    cfg = PolicyConfig(
        action=ActionSpec(joint_names=["a", "b", "c"], lower_limits=[-1.0] * 3, upper_limits=[1.0] * 3),
        observation=ObservationSpec(state_names=["s0", "s1", "s2", "s3"], camera_names=["front"], image_size=(H, W)),
        kind="flow", horizon=HorizonConfig(T_o=T_O, T_p=T_P, T_a=4, dt=0.05),
        network=NetworkConfig(params={"down_dims": [16, 32]}),
        encoder=EncoderConfig(params={"proprio_feature_dim": 16, "proprio_hidden": [32], "image_feature_dim": 16,
                                      "vision_width": 8, "num_keypoints": 8}))
    policy = GenerativePolicy.from_config(cfg)
    policy.fit_normalizers(torch.rand(32, T_P, D_A) * 2 - 1, torch.rand(32, T_O, D_S) * 2)
    path = tmp_path_factory.mktemp("model")
    save_model_dir(policy, path)
    return path


def make_obs(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {"state": rng.uniform(0, 2, (T_O, D_S)).astype(np.float32),  # [T_o, D_s]
            "images": {"front": rng.integers(0, 256, (T_O, H, W, 3), dtype=np.uint8)}}  # uint8 HWC edge format


def in_process_chunk(model_dir, obs, seed, steps=4):
    policy = load_model_dir(model_dir)
    img = torch.from_numpy(obs["images"]["front"]).permute(0, 3, 1, 2).float() / 255.0  # [T_o, 3, H, W]
    batched = {"state": torch.from_numpy(obs["state"])[None], "images": {"front": img[None]}}
    with torch.no_grad():
        out = policy.sample(batched, num_steps=steps, noise=make_noise((1, T_P, D_A), seed))
    return out[0].numpy()


SETTINGS = SamplerSettings(sampler="flow", num_steps=4)


def wait_event(worker, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        event = worker.poll()
        if event is not None:
            return event
        time.sleep(0.005)
    raise AssertionError(f"no event within {timeout} s (state {worker.state})")


def serve_one(worker, seq, seed=1, **kw):
    worker.submit(GenerationRequest(seq=seq, obs=make_obs(seed), t0=time.monotonic(),
                                    settings=kw.pop("settings", SETTINGS),
                                    seed=seed, **kw))
    return wait_event(worker)


@pytest.fixture(scope="module")
def worker(model_dir):
    cfg = WorkerConfig(model_dir=str(model_dir), backend="eager", settings=SETTINGS, heartbeat_timeout_s=1.0,
                       request_timeout_s=1.5, restart_backoff_s=0.05, shm_threshold_bytes=1024)
    w = GenerationWorker(cfg, latency_tracker=LatencyTracker(warmup=0))
    assert w.wait_ready(60), f"worker did not start: {w.poll()}"
    yield w
    w.close()


def test_round_trip_equals_in_process_sampling(worker, model_dir):
    obs = make_obs(5)
    t0 = time.monotonic()
    worker.submit(GenerationRequest(seq=7, obs=obs, t0=t0, settings=SETTINGS, seed=11))
    chunk = wait_event(worker)
    assert isinstance(chunk, ActionChunk), chunk
    assert chunk.seq == 7 and chunk.t0 == t0 and chunk.dt == 0.05
    ref = in_process_chunk(model_dir, obs, seed=11)
    err = float(np.abs(chunk.actions - ref).max())
    assert err < 1e-5, f"worker chunk differs from in-process sampling by {err:.3g}"
    assert chunk.meta["request_latency_s"] > 0 and chunk.latency_s >= chunk.meta["request_latency_s"] * 0.5
    assert worker.latency_tracker.count >= 1
    # different seed -> different chunk (the seed reaches the child)
    other = serve_one(worker, 8, seed=12)
    assert np.abs(other.actions - chunk.actions).max() > 1e-3


def test_newest_request_wins_while_busy(worker):
    slow = SamplerSettings(sampler="flow", num_steps=4, debug_sleep_s=0.3)
    worker.submit(GenerationRequest(seq=20, obs=make_obs(1), t0=0.0, settings=slow, seed=1))
    worker.submit(GenerationRequest(seq=21, obs=make_obs(1), t0=0.0, settings=SETTINGS, seed=1))
    worker.submit(GenerationRequest(seq=22, obs=make_obs(1), t0=0.0, settings=SETTINGS, seed=1))
    seqs = [wait_event(worker).seq, wait_event(worker).seq]
    assert seqs == [20, 22], f"expected the in-flight request and the newest pending one, got {seqs}"
    assert worker.poll() is None


def test_generation_exception_comes_back_and_worker_keeps_serving(worker):
    bad = {"state": np.zeros((T_O, D_S + 5), np.float32), "images": make_obs(0)["images"]}  # wrong state dim
    worker.submit(GenerationRequest(seq=30, obs=bad, t0=0.0, settings=SETTINGS, seed=0))
    err = wait_event(worker)
    assert isinstance(err, WorkerError) and err.kind == "generation" and err.seq == 30, err
    assert "ValueError" in err.message and "Traceback" in err.traceback
    assert isinstance(serve_one(worker, 31), ActionChunk)


def test_killed_child_is_detected_and_restarted(worker):
    old_pid = worker.pid
    worker.submit(GenerationRequest(seq=40, obs=make_obs(1), t0=0.0,
                                    settings=SamplerSettings(sampler="flow", num_steps=4, debug_sleep_s=0.5), seed=1))
    time.sleep(0.1)
    os.kill(old_pid, signal.SIGKILL)
    err = wait_event(worker)
    assert isinstance(err, WorkerError) and err.kind == "crashed" and err.seq == 40 and err.restarting, err
    assert worker.wait_ready(60), "worker did not come back after SIGKILL"
    assert worker.pid != old_pid
    assert isinstance(serve_one(worker, 41), ActionChunk)


def test_hung_child_is_detected_by_the_watchdog(worker):
    old_pid = worker.pid
    t = time.monotonic()
    hang = SamplerSettings(sampler="flow", num_steps=4, debug_sleep_s=30.0)
    worker.submit(GenerationRequest(seq=50, obs=make_obs(1), t0=0.0, settings=hang, seed=1))
    err = wait_event(worker)
    waited = time.monotonic() - t
    assert isinstance(err, WorkerError) and err.kind == "hung" and err.seq == 50, err
    assert waited < 10.0, f"the hang was detected after {waited:.1f} s (request_timeout_s=1.5)"
    assert worker.wait_ready(60)
    assert worker.pid != old_pid
    assert isinstance(serve_one(worker, 51), ActionChunk)


def test_frozen_child_is_detected_by_missing_heartbeat(worker):
    pid = worker.pid
    os.kill(pid, signal.SIGSTOP)  # a frozen process: no heartbeat, no reply
    try:
        err = wait_event(worker, timeout=10)
    finally:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
    assert isinstance(err, WorkerError) and err.kind == "hung" and "heartbeat" in err.message, err
    assert worker.wait_ready(60)
    assert isinstance(serve_one(worker, 61), ActionChunk)


def test_shutdown_leaves_no_child_and_no_shared_memory(worker):
    # runs last among the tests that use the module's worker: it closes it
    w = worker
    assert w.wait_ready(60)
    assert isinstance(serve_one(w, 100), ActionChunk)
    shm_names = [slot.name for slot in w._shm._slots.values()]
    assert shm_names, "the image should have travelled through shared memory"
    proc = w._proc
    pid = w.pid
    w.close()
    assert w.state == WorkerState.CLOSED
    assert proc.exitcode is not None and proc not in mp.active_children(), "the child was not reaped"
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    for name in shm_names:
        assert not os.path.exists(f"/dev/shm/{name.lstrip('/')}"), f"shared memory {name} leaked"
    with pytest.raises(RuntimeError):
        w.submit(GenerationRequest(seq=101, obs=make_obs(1), t0=0.0))


def test_start_failure_is_reported_and_gives_up(tmp_path):
    cfg = WorkerConfig(model_dir=str(tmp_path / "missing"), backend="eager", restart_backoff_s=0.05,
                       max_start_failures=1)
    w = GenerationWorker(cfg)
    try:
        assert not w.wait_ready(60)
        errors = []
        while (e := w.poll()) is not None:
            errors.append(e)
        assert [e.kind for e in errors] == ["start_failed"], errors
        assert "ModelLoadError" in errors[0].message and errors[0].traceback
        assert w.state == WorkerState.FAILED and not errors[-1].restarting
        w.submit(GenerationRequest(seq=5, obs=make_obs(1), t0=0.0))
        refused = w.poll()
        assert isinstance(refused, WorkerError) and refused.kind == "failed" and refused.seq == 5
    finally:
        w.close()
    assert w._proc is None and not w._zombies, "child left behind"


def test_thread_worker_same_interface(model_dir):
    cfg = WorkerConfig(model_dir=str(model_dir), backend="eager", settings=SETTINGS)
    with ThreadGenerationWorker(cfg) as w:
        assert w.wait_ready(60)
        obs = make_obs(5)
        w.submit(GenerationRequest(seq=3, obs=obs, t0=1.0, settings=SETTINGS, seed=11))
        chunk = wait_event(w)
        assert isinstance(chunk, ActionChunk) and chunk.seq == 3
        assert np.abs(chunk.actions - in_process_chunk(model_dir, obs, seed=11)).max() < 1e-5
        w.submit(GenerationRequest(seq=4, obs={"state": np.zeros((1, 1))}, t0=1.0, settings=SETTINGS))
        err = wait_event(w)
        assert isinstance(err, WorkerError) and err.kind == "generation" and err.seq == 4


def test_obs_from_snapshot_maps_streams():
    class Snap:
        data = {"state": np.zeros((2, 4)), "camera/front": np.zeros((2, 8, 8, 3), np.uint8)}

    obs = obs_from_snapshot(Snap())
    assert set(obs) == {"state", "images"} and set(obs["images"]) == {"front"}
    assert obs["state"] is Snap.data["state"]
