"""NoiseSchedule: values, caching, validation."""
import dataclasses
import math

import pytest
import torch

from genpolicy_ros.core.schedules import BETA_SCHEDULES, NoiseSchedule


def test_defaults_are_diffusion_policy_cosine_schedule():
    s = NoiseSchedule()
    assert (s.num_train_steps, s.beta_schedule) == (100, "squaredcos_cap_v2")
    for name in ("betas", "alphas", "alphas_cumprod"):
        v = getattr(s, name)
        assert v.dtype == torch.float32 and v.shape == (100,), (name, v.dtype, v.shape)
    # the last beta is capped at 0.999 (Nichol & Dhariwal 2021), all others below it
    assert s.betas[-1].item() == pytest.approx(0.999, abs=1e-7)
    assert (s.betas[:-1] < 0.999).all()
    assert (s.betas[1:] >= s.betas[:-1]).all(), "cosine betas must be non-decreasing"


@pytest.mark.parametrize("beta_schedule", BETA_SCHEDULES)
def test_derived_quantities(beta_schedule):
    s = NoiseSchedule(50, beta_schedule)
    assert torch.allclose(s.alphas, 1 - s.betas)
    cum = torch.cumprod(1 - s.betas.double(), 0)
    err = (s.alphas_cumprod.double() - cum).abs().max().item()
    assert err < 1e-6, f"alphas_cumprod off the product of (1 - beta) by {err:.3g}"
    assert (s.alphas_cumprod[1:] < s.alphas_cumprod[:-1]).all(), "ᾱ must strictly decrease"
    assert 0 < s.alphas_cumprod[-1] < s.alphas_cumprod[0] < 1


def test_linear_endpoints_and_cosine_closed_form():
    lin = NoiseSchedule(100, "linear", 1e-4, 0.02)
    assert lin.betas[0].item() == pytest.approx(1e-4, rel=1e-6)
    assert lin.betas[-1].item() == pytest.approx(0.02, rel=1e-6)
    sq = NoiseSchedule(100, "scaled_linear", 1e-4, 0.02)
    assert sq.betas[0].item() == pytest.approx(1e-4, rel=1e-5)
    assert sq.betas[-1].item() == pytest.approx(0.02, rel=1e-5)
    assert (sq.betas[1:-1] < lin.betas[1:-1]).all(), "scaled_linear lies below linear inside"
    # cosine: ᾱ_k = f((k+1)/K) / f(0), f(t) = cos²((t + 0.008)/1.008 · π/2), until the cap
    cos = NoiseSchedule(100, "squaredcos_cap_v2")
    f = lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    expected = torch.tensor([f((k + 1) / 100) / f(0) for k in range(99)], dtype=torch.float64)
    err = (cos.alphas_cumprod[:99].double() - expected).abs().max().item()
    assert err < 1e-6, f"cosine ᾱ off the closed form by {err:.3g}"


def test_tensors_are_cached_and_instance_is_frozen_value():
    s = NoiseSchedule(20, "linear")
    assert s.betas is s.betas and s.alphas_cumprod is s.alphas_cumprod
    assert s == NoiseSchedule(20, "linear") and hash(s) == hash(NoiseSchedule(20, "linear"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.num_train_steps = 10
    one = NoiseSchedule(1, "linear")
    assert one.betas.shape == (1,)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(num_train_steps=0), "num_train_steps must be >= 1"),
        (dict(num_train_steps=10.0), "num_train_steps must be an int"),
        (dict(num_train_steps=True), "num_train_steps must be an int"),
        (dict(beta_schedule="cosine"), "beta_schedule must be one of"),
        (dict(beta_start=0.0), "beta_start must be in"),
        (dict(beta_end=1.0), "beta_end must be in"),
        (dict(beta_end=float("nan")), "beta_end must be in"),
        (dict(beta_start="1e-4"), "beta_start must be a float"),
        (dict(beta_start=0.03, beta_end=0.02), "must not exceed beta_end"),
    ],
)
def test_invalid_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NoiseSchedule(**kwargs)
