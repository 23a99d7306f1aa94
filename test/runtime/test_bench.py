"""`genpolicy bench`: the seam metric, the seam driver on a trained policy, the report.

A tiny flow policy is trained for a few hundred steps on scripted-expert episodes of the
reaching task (session fixture, a few seconds), so seams are measured on chunks that
mean something. The CLI run uses tiny repeats / executor seconds: it checks the JSON
schema and the plots, not the numbers.
"""
import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
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
from genpolicy_ros.runtime.bench.latency import SamplerSpec, speedup_summary, twin_policy
from genpolicy_ros.runtime.bench.seams import (
    GRID_MODES,
    SeamConfig,
    accelerations,
    format_seam_grid,
    measure_seam_grid,
    measure_seams,
    seam_ratio,
)

T_O, T_P, T_A, DT = 2, 16, 8, 0.05
PERIOD = 0.01


# --------------------------------------------------------------------------- fixtures
def _windows(dataset):
    """Training windows (obs t−1..t, actions t..t+T_p−1) from every episode."""
    states, actions = [], []
    for ep in dataset:
        n = len(ep)
        for t in range(n):
            obs_idx = np.clip(np.arange(t - T_O + 1, t + 1), 0, n - 1)
            act_idx = np.clip(np.arange(t, t + T_P), 0, n - 1)
            states.append(ep.state[obs_idx])  # [T_o, 4]
            actions.append(ep.action[act_idx])  # [T_p, 2]
    return torch.as_tensor(np.stack(states)), torch.as_tensor(np.stack(actions))


def _reach_config(kind="flow"):
    from genpolicy_ros.sim.reach_env import ALL_JOINTS, ARM_JOINTS, JOINT_LOWER, JOINT_UPPER

    return PolicyConfig(
        action=ActionSpec(joint_names=list(ARM_JOINTS), lower_limits=JOINT_LOWER.tolist(),
                          upper_limits=JOINT_UPPER.tolist()),
        observation=ObservationSpec(state_names=list(ALL_JOINTS)),
        kind=kind, horizon=HorizonConfig(T_o=T_O, T_p=T_P, T_a=T_A, dt=DT),
        network=NetworkConfig(params={"down_dims": [16, 32]}),
        encoder=EncoderConfig(params={"proprio_feature_dim": 16, "proprio_hidden": [32]}),
        cond_dropout=0.0)


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory):
    """A tiny flow policy trained 300 steps on 8 expert episodes (a few seconds)."""
    from genpolicy_ros.sim.offline import collect_expert_episodes

    root = tmp_path_factory.mktemp("bench")
    dataset = collect_expert_episodes(root / "data", 8, seed=3, dt=DT, progress=False)
    states, actions = _windows(dataset)  # [N, T_o, 4], [N, T_p, 2]
    torch.manual_seed(0)
    policy = GenerativePolicy.from_config(_reach_config())
    policy.fit_normalizers(actions, states)
    opt = torch.optim.Adam(policy.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    policy.train()
    for _ in range(300):
        idx = torch.randint(0, states.shape[0], (64,), generator=gen)
        loss, _ = policy.loss({"obs": {"state": states[idx]}, "action": actions[idx]}, generator=gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
    policy.eval()
    save_model_dir(policy, root / "model")
    return root / "model", float(loss.detach())


# --------------------------------------------------------------------------- seam metric
def test_acceleration_is_the_second_difference_over_period_squared():
    t = np.arange(50) * PERIOD
    trace = np.stack([1.5 * t ** 2, -0.5 * t ** 2], axis=1)  # [50, 2] accelerations 3 and -1
    acc = accelerations(trace, PERIOD)
    assert np.isnan(acc[0]) and np.isnan(acc[-1])
    assert np.allclose(acc[1:-1], 3.0), acc[1:4]  # max over joints of |a|


def test_seam_ratio_flags_a_jump_and_not_a_smooth_trace():
    t = np.arange(400) * PERIOD
    smooth = np.stack([np.sin(2 * math.pi * 0.5 * t), np.cos(2 * math.pi * 0.7 * t)], axis=1)  # [400, 2]
    seams = [40, 120, 200, 280, 360]
    calm = seam_ratio([smooth], [seams], PERIOD)
    assert calm["n_seams"] == 5
    assert 0.5 <= calm["ratio"] <= 1.05, f"smooth trace: ratio {calm['ratio']:.3f} should be ~1"

    jumpy = smooth.copy()
    for s in seams:
        jumpy[s:] += 0.02  # a 2 cm step at every seam: what switching without blending can do
    hit = seam_ratio([jumpy], [seams], PERIOD)
    # step accel 0.02 / T² = 200 vs the smooth part's peak (2π·0.7)² ≈ 19.3: ratio ≈ 10
    assert hit["ratio"] > 5, f"jump at the seams: ratio {hit['ratio']:.1f} should be >> 1"
    assert hit["max_seam_accel"] == pytest.approx(0.02 / PERIOD ** 2, rel=0.15)
    assert hit["in_chunk_p99_accel"] == pytest.approx(calm["in_chunk_p99_accel"], rel=1e-6), "seams leak into the body"


def test_seam_ratio_is_undefined_without_seams():
    trace = np.zeros((30, 2))
    out = seam_ratio([trace], [[]], PERIOD)
    assert out["ratio"] is None and out["n_seams"] == 0


# --------------------------------------------------------------------------- seams on a policy
def test_seams_on_a_trained_policy_rtc_is_smoother_than_no_blending(trained_dir):
    from genpolicy_ros.core.checkpoint import load_model_dir

    model_dir, final_loss = trained_dir
    policy = load_model_dir(model_dir)
    modes = ("none", "ensemble", "rtc-hard", "rtc-guided")
    from genpolicy_ros.tasks import get_task
    from genpolicy_ros.tasks.plant import TaskPlantFactory

    reach = TaskPlantFactory(get_task("reach"))
    out = measure_seams(policy, SeamConfig(modes=modes, episodes=2, seconds=2.0, delay_rows=2, seed=0),
                        task_plant=reach)
    assert out["plant"] == "reach"
    ratios = {m: out["modes"][m]["metric"]["ratio"] for m in modes}
    for mode, v in out["modes"].items():
        ep = v["episodes"][0]
        assert ep["trace"].shape[1] == 2 and np.isfinite(ep["trace"]).all()
        assert len(ep["seams"]) >= 3, f"{mode}: only {len(ep['seams'])} seams in 2 s"
    assert all(r is not None and r > 0 for r in ratios.values()), ratios
    # Hard RTC inpaints the executed rows exactly, so its seams look like any in-chunk row
    # boundary; switching without blending jumps (measured: none ≈ 5, rtc-hard ≈ 1.3).
    assert ratios["rtc-hard"] < 2.0 and ratios["rtc-hard"] < ratios["none"], (
        f"seam ratios {ratios} (train loss {final_loss:.3f})")
    # Deterministic on the simulated clock: the same run gives the same numbers.
    again = measure_seams(policy, SeamConfig(modes=("rtc-hard",), episodes=2, seconds=2.0, delay_rows=2, seed=0),
                          task_plant=reach)
    assert again["modes"]["rtc-hard"]["metric"]["ratio"] == pytest.approx(ratios["rtc-hard"], rel=1e-9)


def test_seam_grid_measures_every_delay_and_horizon_cell(trained_dir):
    from genpolicy_ros.core.checkpoint import load_model_dir

    policy = load_model_dir(trained_dir[0])
    grid = measure_seam_grid(policy, SeamConfig(modes=GRID_MODES, episodes=1, seconds=1.5, seed=0), [1, 2], [4, 8])
    cells = {(c["action_horizon"], c["delay_rows"]): c["ratios"] for c in grid["cells"]}
    assert set(cells) == {(4, 1), (4, 2), (8, 1), (8, 2)}
    for key, ratios in cells.items():
        assert set(ratios) == set(GRID_MODES)
        # both RTC modes inpaint the executed rows: their seams are far below switching without blending
        assert ratios["rtc-hard"] < 0.5 * ratios["none"] and ratios["rtc-guided"] < 0.5 * ratios["none"], (key, ratios)
    table = format_seam_grid(grid).splitlines()
    assert len(table) == 2 + len(cells) and all(m in table[1] for m in GRID_MODES)
    with pytest.raises(ValueError, match="delays"):
        measure_seam_grid(policy, SeamConfig(), [-1], [8])


# --------------------------------------------------------------------------- latency helpers
def test_twin_has_the_other_kind_and_the_same_weights():
    policy = GenerativePolicy.from_config(_reach_config("flow"))
    twin, is_twin = twin_policy(policy, "diffusion")
    same, not_twin = twin_policy(policy, "flow")
    assert is_twin and twin.config.kind == "diffusion" and same is policy and not not_twin
    for (name, a), (_, b) in zip(policy.state_dict().items(), twin.state_dict().items()):
        assert torch.equal(a, b), name


def test_sampler_spec_parsing_and_speedup_summary():
    assert SamplerSpec.parse("ddpm-100") == SamplerSpec("ddpm", 100)
    with pytest.raises(ValueError, match="flow-10"):
        SamplerSpec.parse("flow10")
    rows = [dict(device="cpu", spec="flow-10", backend="eager", status="ok", p50_ms=10.0, max_abs_diff_vs_eager=0.0,
                 twin=False),
            dict(device="cpu", spec="flow-10", backend="onnxruntime", status="ok", p50_ms=4.0,
                 max_abs_diff_vs_eager=2e-6, twin=False),
            dict(device="cpu", spec="flow-10", backend="compile", status="failed", reason="x", twin=False)]
    s = speedup_summary(rows)["cpu"]["flow-10"]
    assert s["best_backend"] == "onnxruntime" and s["speedup"] == pytest.approx(2.5)


# --------------------------------------------------------------------------- the CLI
def test_cli_writes_the_json_schema_table_and_plots(trained_dir, tmp_path, capsys):
    from genpolicy_ros.cli import main

    model_dir, _ = trained_dir
    out_json, plot_dir = tmp_path / "bench.json", tmp_path / "plots"
    status = main(["bench", str(model_dir), "--json", str(out_json), "--plot", str(plot_dir),
                   "--backends", "eager,onnxruntime,tensorrt", "--samplers", "ddpm-8,ddim-2,flow-2",
                   "--repeats", "3", "--warmup", "1", "--executor-seconds", "1.0", "--executor-backend", "eager",
                   "--seam-episodes", "1", "--seam-seconds", "1.2", "--ros-seconds", "0", "--no-progress"])
    assert status == 0
    report = json.loads(out_json.read_text())
    for key in ("timestamp", "machine", "model", "settings", "chunk_latency_ms", "speedup_vs_eager",
                "executor", "seams"):
        assert key in report, key
    assert report["machine"]["cpu_count"] >= 1 and isinstance(report["machine"]["torch"], str)
    assert report["model"]["params"] > 0 and len(report["model"]["weights_sha256"]) == 64

    rows = report["chunk_latency_ms"]
    ok = [r for r in rows if r["status"] == "ok"]
    assert {(r["spec"], r["backend"]) for r in ok if r["device"] == "cpu"} >= {
        ("ddpm-8", "eager"), ("ddim-2", "eager"), ("flow-2", "eager"), ("flow-2", "onnxruntime")}, ok
    for r in ok:
        assert 0 < r["p50_ms"] <= r["p99_ms"] and r["runs"] == 3, r
        assert r["max_abs_diff_vs_eager"] < 1e-4, r
        assert r["twin"] == (r["sampler"] != "flow"), r
    trt = [r for r in rows if r["backend"] == "tensorrt" and r["device"] == "cpu"]
    assert trt and all(r["status"] == "skipped" and r["reason"] for r in trt), trt
    if not torch.cuda.is_available():
        gpu = [r for r in rows if r["device"] == "cuda"]
        assert gpu and all(r["status"] == "skipped" and "CUDA" in r["reason"] for r in gpu)
    assert report["speedup_vs_eager"]["cpu"]["flow-2"]["speedup"] > 0

    ex = report["executor"]
    for key in ("rate_hz", "duration_s", "lateness_p50_ms", "lateness_p99_ms", "lateness_max_ms", "missed_ticks"):
        assert isinstance(ex[key], (int, float)), (key, ex[key])
    assert ex["rate_hz"] == 100.0 and ex["duration_s"] >= 0.95
    for run in ("idle", "generating"):  # every grid point is either run or counted as missed
        r = ex[run]
        grid = r["ticks"] + r["missed_ticks"]
        assert grid == pytest.approx(r["duration_s"] * 100, abs=15), (run, r["ticks"], r["missed_ticks"])
    assert ex["generating"]["chunks_engine"] + ex["generating"]["chunks_filler"] >= 1, ex["generating"]

    for mode in ("none", "ensemble", "rtc", "rtc-guided"):
        assert isinstance(report["seams"][mode]["ratio"], float), report["seams"][mode]
        assert report["seams"][mode]["n_seams"] >= 1

    assert report["ros_command_stream"] == {"skipped": True, "reason": "--ros-seconds 0"}

    table = capsys.readouterr().out
    assert "chunk latency" in table and "executor" in table and "seams" in table
    assert "ROS command stream: skipped (--ros-seconds 0)" in table
    pngs = sorted(p.name for p in plot_dir.glob("*.png"))
    assert {"latency_cpu.png", "executor_lateness.png", "seams_none.png", "seams_ensemble.png",
            "seams_rtc.png"} <= set(pngs), pngs
    for p in plot_dir.glob("*.png"):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", p


def test_cli_rejects_bad_arguments(tmp_path, capsys):
    from genpolicy_ros.cli import main

    assert main(["bench", str(tmp_path), "--json", str(tmp_path / "x.json"), "--samplers", "flow10"]) == 2
    assert "flow-10" in capsys.readouterr().err
    assert main(["bench", str(tmp_path), "--json", str(tmp_path / "x.json"), "--skip-executor"]) == 2  # no model
    assert "config.json" in capsys.readouterr().err


def test_seam_plant_comes_from_the_caller():
    """runtime/ runs no task itself: without a task plant 'auto' is the synthetic stream and
    'task' is an error; a plant that does not fit the model is not used by 'auto'."""
    policy = GenerativePolicy.from_config(_reach_config("flow"))
    cfg = SeamConfig(modes=("none",), episodes=1, seconds=0.2, delay_rows=1)
    assert measure_seams(policy, cfg)["plant"] == "synthetic"
    with pytest.raises(ValueError, match="no task plant"):
        measure_seams(policy, dataclasses.replace(cfg, plant="task"))

    class Unfit:
        name = "other"

        def fits(self, model):
            return False

        def __call__(self, model, seed):
            raise AssertionError("an unfit plant must not run")

    assert measure_seams(policy, cfg, task_plant=Unfit())["plant"] == "synthetic"


def test_gpu_check_runs_its_cpu_rows_and_reports_parity(tiny_model_dir, tmp_path, capsys):
    """The Python part of scripts/gpu_check.sh, on the CPU (the GPU rows need a GPU machine)."""
    from genpolicy_ros.runtime.bench import backend_check as gpu_check

    model = tiny_model_dir
    out = tmp_path / "gpu.json"
    status = gpu_check.main(["--device", "cpu", "--backends", "onnxruntime", "--precisions", "fp32,fp16",
                             "--models", str(model), "--repeats", "2", "--warmup", "0", "--seeds", "1",
                             "--json", str(out)])
    report = json.loads(out.read_text())
    rows = {(r["backend"], r["precision"]): r for r in report["rows"]}
    assert status == 0, rows
    assert rows[("eager", "fp32")]["status"] == "ok" and rows[("eager", "fp32")]["speedup_vs_eager"] == 1.0
    onnx = rows[("onnxruntime", "fp32")]
    assert onnx["status"] == "ok" and onnx["parity_ok"] and onnx["max_abs_err"] < 1e-4, onnx
    assert onnx["prefix_graph"] == "built" and onnx["paths"] == ["graph"] and onnx["p50_ms"] > 0
    assert rows[("onnxruntime", "fp16")]["status"] == "skipped" and "fp16" in rows[("onnxruntime", "fp16")]["reason"]
    assert "onnxruntime" in capsys.readouterr().out


def test_gpu_check_script_dry_run_without_install(tmp_path):

    if shutil.which("bash") is None:
        pytest.skip("no bash")
    root = Path(__file__).resolve().parents[2]
    script = root / "scripts" / "gpu_check.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0, "syntax error in gpu_check.sh"
    env = dict(os.environ, PYTHON=sys.executable)
    done = subprocess.run(["bash", str(script), "--no-install", "--dry-run", "--out", str(tmp_path)], cwd=root,
                          env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "torch_tensorrt" in done.stdout and (tmp_path / "gpu_check.json").is_file()
