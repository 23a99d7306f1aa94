"""Success-vs-steps bookkeeping of ``python -m genpolicy_ros.sim.aloha.success_curve``: which
models of a run count, rows appended only for new steps, settings never mixed in one CSV,
the plot; and the GIF writer. (Roll-outs themselves: test_shipped_aloha_model.py.)"""
import json

import numpy as np
import pytest

from genpolicy_ros.sim.aloha import success_curve as sc
from genpolicy_ros.sim.aloha.episode_gif import write_gif


def _model(d, step=None):
    d.mkdir(parents=True)
    (d / "model.safetensors").write_bytes(b"w")
    (d / "config.json").write_text(json.dumps({"metadata": {"train_step": step} if step else {}}))


def _evaluation(success, grasped=True, lifted=True, transferred=None, benchmark=None):
    transferred = success if transferred is None else transferred
    return {"success": success, "benchmark_success": success if benchmark is None else benchmark,
            "stages": {"grasped": grasped, "lifted": lifted, "transferred": transferred}}


def test_run_models_are_complete_checkpoints_and_the_final_model_by_step(tmp_path):
    run = tmp_path / "run"
    _model(run / "checkpoints" / "step_000200")
    _model(run / "checkpoints" / "step_000100")
    (run / "checkpoints" / "step_000300").mkdir()  # being written: no weights yet
    assert [s for s, _ in sc.run_models(run)] == [100, 200]
    (run / "model.safetensors").write_bytes(b"w")
    (run / "config.json").write_text(json.dumps({"metadata": {"train_step": 200}}))
    assert sc.run_models(run) == [(100, run / "checkpoints" / "step_000100"), (200, run)]


def test_update_evaluates_only_new_steps_and_refuses_other_settings(tmp_path):
    run = tmp_path / "run"
    _model(run / "checkpoints" / "step_000100")
    csv_path = tmp_path / "curve.csv"
    calls = []

    def evaluate(model, episodes, seed):
        calls.append((model.name, episodes, seed))
        outcomes = [_evaluation(True), _evaluation(False, lifted=False, benchmark=True), _evaluation(False)]
        return outcomes[:episodes], [0.05] * episodes

    rows = sc.update_curve(run, csv_path, 3, 1, evaluate=evaluate, log=lambda _: None)
    assert rows == [{"step": 100, "episodes": 3, "seed": 1, "success": 1, "grasped": 3, "lifted": 2,
                     "transferred": 1, "benchmark": 2, "sample_ms": 50.0}]
    _model(run / "checkpoints" / "step_000200")
    rows = sc.update_curve(run, csv_path, 3, 1, evaluate=evaluate, log=lambda _: None)
    assert [r["step"] for r in rows] == [100, 200] and [c[0] for c in calls] == ["step_000100", "step_000200"]
    with pytest.raises(ValueError, match="other --episodes/--seed"):
        sc.update_curve(run, csv_path, 5, 1, evaluate=evaluate)
    assert len(calls) == 2


def test_curve_csv_with_other_columns_is_an_error_and_the_plot_is_a_png(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("step,success\n1,2\n")
    with pytest.raises(ValueError, match="columns"):
        sc.read_curve(bad)
    rows = [sc.curve_row(s, 1, [_evaluation(s > 100)] * 4, [0.1]) for s in (100, 200)]
    log = tmp_path / "train_log.csv"
    log.write_text("step,epoch,loss,lr,ema_decay,elapsed_s\n100,0,0.5,1e-3,0.9,1\n200,0,0.2,1e-3,0.9,2\n")
    png = sc.plot_curve(rows, tmp_path / "curve.png", log)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError):
        sc.plot_curve([], tmp_path / "empty.png")


def test_gif_holds_every_frame_in_order(tmp_path):
    import imageio.v3 as iio

    frames = np.zeros((3, 16, 24, 3), np.uint8)  # [N, H, W, 3]
    for i in range(3):
        frames[i, :, :, i] = 255  # red, green, blue
    out = write_gif(frames, tmp_path / "x.gif", frame_s=0.08)
    back = iio.imread(out, index=None)  # [N, H, W, 3 or 4]
    assert back.shape[0] == 3 and back.shape[1:3] == (16, 24)
    assert [int(np.argmax(back[i, 8, 12, :3])) for i in range(3)] == [0, 1, 2]
    with pytest.raises(ValueError):
        write_gif(frames[:0], tmp_path / "y.gif", frame_s=0.08)
