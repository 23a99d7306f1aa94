"""LR schedule (warm-up + cosine) and EMA (Diffusion Policy's warm-up EMA) unit tests."""
import math

import pytest
import torch
from torch import nn

from genpolicy_ros.training.config import EMAConfig, TrainConfig
from genpolicy_ros.training.ema import EMA, ema_decay
from genpolicy_ros.training.schedule import WarmupCosineSchedule, lr_multiplier


def test_lr_schedule_shape():
    total, warm = 100, 10
    m = [lr_multiplier(s, total, warm) for s in range(total + 1)]
    assert m[0] == 0.0 and m[5] == pytest.approx(0.5) and m[10] == pytest.approx(1.0)
    assert all(b > a for a, b in zip(m[:10], m[1:11])), "warm-up must rise linearly"
    assert all(b <= a for a, b in zip(m[10:], m[11:])), "cosine part must not increase"
    assert m[55] == pytest.approx(0.5, abs=1e-12), "half way through the cosine the multiplier is 1/2"
    assert m[100] == pytest.approx(0.0, abs=1e-12) and lr_multiplier(500, total, warm) == pytest.approx(0.0)
    assert lr_multiplier(100, total, warm, min_ratio=0.1) == pytest.approx(0.1)
    with pytest.raises(ValueError):
        lr_multiplier(-1, total, warm)
    # A warm-up longer than the run is cut to the run: a linear ramp reaching 1 at the end.
    assert lr_multiplier(5, 10, 100) == pytest.approx(0.5)


def test_lr_schedule_matches_diffusers_cosine_with_warmup():
    diffusers_opt = pytest.importorskip("diffusers.optimization", reason="diffusers is the test-only peer")
    p = nn.Parameter(torch.zeros(1))
    total, warm, base = 60, 7, 3e-4
    opt_ref = torch.optim.AdamW([p], lr=base)
    ref = diffusers_opt.get_cosine_schedule_with_warmup(opt_ref, num_warmup_steps=warm, num_training_steps=total)
    opt = torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=base)
    ours = WarmupCosineSchedule(base, total, warm)
    worst = 0.0
    for step in range(total):
        got = ours.apply(opt, step)
        want = opt_ref.param_groups[0]["lr"]
        assert opt.param_groups[0]["lr"] == got
        worst = max(worst, abs(got - want))
        opt_ref.step()
        ref.step()
    assert worst < 1e-12, f"max |lr - diffusers lr| = {worst}"


def test_ema_decay_follows_the_warmup_formula():
    assert ema_decay(0) == 0.0 and ema_decay(1) == 0.0, "the first two updates copy the weights"
    assert ema_decay(2) == pytest.approx(1 - 2 ** -0.75)
    assert ema_decay(100) == pytest.approx(1 - 100 ** -0.75)
    assert ema_decay(10**9) == 0.9999, "capped at max_decay"
    assert ema_decay(5, update_after_step=10) == 0.0
    assert ema_decay(3, min_decay=0.9) == 0.9
    decays = [ema_decay(s) for s in range(1, 2000)]
    assert all(b >= a for a, b in zip(decays, decays[1:])), "decay must not decrease"


def test_ema_tracks_parameters_and_copies_buffers():
    model = nn.Linear(1, 1, bias=False)
    model.register_buffer("stat", torch.zeros(2))
    ema = EMA(model, EMAConfig(power=0.75, max_decay=0.9999))
    expected = float(model.weight.detach())
    values = [3.0, -1.0, 2.0, 5.0, 0.5]
    for step, v in enumerate(values):
        with torch.no_grad():
            model.weight.fill_(v)
            model.stat.fill_(step)
        d = ema.update(model)
        assert d == pytest.approx(ema_decay(step))
        expected = d * expected + (1 - d) * v
        assert float(ema.model.weight) == pytest.approx(expected, rel=1e-6), f"step {step}"
        assert torch.equal(ema.model.stat, model.stat), "buffers (normaliser stats) are copied"
    assert float(ema.model.weight) != pytest.approx(values[-1]), "the average must lag the raw weight"
    assert not ema.model.weight.requires_grad and not ema.model.training
    # state_dict round trip restores the average and the count.
    other = EMA(model)
    other.load_state_dict(ema.state_dict())
    assert other.num_updates == len(values) and torch.equal(other.model.weight, ema.model.weight)


def test_ema_of_constant_weights_is_that_constant():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    ema = EMA(model)
    for _ in range(50):
        ema.update(model)
    for (n, p), q in zip(model.named_parameters(), ema.model.parameters()):
        assert torch.allclose(p, q, atol=1e-6), n


def test_train_config_validation_messages():
    assert TrainConfig().lr == 1e-4 and TrainConfig().weight_decay == 1e-6
    assert TrainConfig().ema.power == 0.75 and TrainConfig().ema.max_decay == 0.9999
    with pytest.raises(ValueError, match=r"TrainConfig.steps must be an int >= 1"):
        TrainConfig(steps=0)
    with pytest.raises(ValueError, match=r"TrainConfig.warmup_steps must be an int >= 0"):
        TrainConfig(warmup_steps=-1)
    with pytest.raises(ValueError, match=r"TrainConfig.lr"):
        TrainConfig(lr=math.nan)
    with pytest.raises(ValueError, match=r"EMAConfig.max_decay"):
        TrainConfig(ema={"max_decay": 1.5})
    with pytest.raises(ValueError, match=r"unknown keys \['learning_rate'\]"):
        TrainConfig.from_dict({"learning_rate": 1e-3})
    with pytest.raises(ValueError, match=r"device must be auto, cpu, cuda"):
        TrainConfig(device="tpu")
    cfg = TrainConfig(steps=7, ema={"enabled": False})
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
