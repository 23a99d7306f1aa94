"""q_sample / targets, DDIM and DDPM samplers, argument checks, prefix inpainting."""
from dataclasses import dataclass

import pytest
import torch

from genpolicy_ros.core.diffusion import (
    PREDICTION_TYPES,
    ddim_sample,
    ddim_timesteps,
    ddpm_sample,
    predict_x0_eps,
    q_sample,
    training_target,
)
from genpolicy_ros.core.schedules import NoiseSchedule

B, T, D = 4, 8, 2


@dataclass
class Prefix:
    """Duck type of core.inpainting.PrefixConstraint (owned by another module)."""

    target: torch.Tensor
    weights: torch.Tensor
    mode: str = "hard"
    max_guidance: float = 5.0


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _oracle(schedule, point, prediction_type):
    """Ideal denoiser for a data distribution that is the single point ``point`` [1, T, D]."""

    def model_fn(x, t):
        abar = schedule.alphas_cumprod[t][:, None, None]  # [B, 1, 1]
        eps = (x - abar**0.5 * point) / (1 - abar) ** 0.5  # [B, T, D]
        if prediction_type == "epsilon":
            return eps
        if prediction_type == "sample":
            return point.expand_as(x)
        return abar**0.5 * eps - (1 - abar) ** 0.5 * point

    return model_fn


def _random_model(seed=1):
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(T, T, generator=g) / T**0.5  # [T, T]
    w = torch.randn(D, D, generator=g) * 0.7  # [D, D]

    def model_fn(x, t):
        h = torch.einsum("st,btd,de->bse", mix, x, w)  # [B, T, D]
        return torch.tanh(h + torch.cos(t.float() / 9.0)[:, None, None])

    return model_fn


# ------------------------------------------------------------------ forward process


@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
@pytest.mark.parametrize("beta_schedule,t_max,tol", [("linear", 100, 1e-5),
                                                     ("squaredcos_cap_v2", 90, 1e-4)])
def test_perfect_predictor_recovers_x0_and_noise(prediction_type, beta_schedule, t_max, tol):
    s = NoiseSchedule(100, beta_schedule)
    x0, noise = _randn(64, T, D, seed=1), _randn(64, T, D, seed=2)
    t = torch.randint(0, t_max, (64,), generator=torch.Generator().manual_seed(3))
    t[0], t[1] = 0, t_max - 1
    x_t = q_sample(s, x0, noise, t)
    target = training_target(s, x0, noise, t, prediction_type)
    x0_hat, eps_hat = predict_x0_eps(s, x_t, target, t, prediction_type)
    e0, e1 = (x0_hat - x0).abs().max().item(), (eps_hat - noise).abs().max().item()
    assert e0 < tol and e1 < tol, f"x0 error {e0:.3g}, eps error {e1:.3g}"


def test_q_sample_is_variance_preserving_and_accepts_int_timestep():
    s = NoiseSchedule()
    ones, zeros = torch.ones(3, T, D), torch.zeros(3, T, D)
    t = torch.tensor([0, 50, 99])
    signal, noise = q_sample(s, ones, zeros, t), q_sample(s, zeros, ones, t)
    assert torch.allclose(signal**2 + noise**2, torch.ones(3, T, D), atol=1e-6)
    assert torch.allclose(signal[:, 0, 0] ** 2, s.alphas_cumprod[t])
    x0, eps = _randn(3, T, D, seed=4), _randn(3, T, D, seed=5)
    assert torch.equal(q_sample(s, x0, eps, 42), q_sample(s, x0, eps, torch.full((3,), 42)))
    # v = sqrt(ᾱ)ε − sqrt(1−ᾱ)x0 and x0 = sqrt(ᾱ)x_t − sqrt(1−ᾱ)v (Salimans & Ho 2022)
    v = training_target(s, x0, eps, t, "v_prediction")
    a = s.alphas_cumprod[t][:, None, None]
    assert torch.allclose(a**0.5 * q_sample(s, x0, eps, t) - (1 - a) ** 0.5 * v, x0, atol=1e-5)


# ------------------------------------------------------------------ samplers


@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
def test_ddim_and_ddpm_with_oracle_return_the_data_point(prediction_type):
    s = NoiseSchedule()
    # float64: in float32 the 1/sqrt(ᾱ_99) ≈ 2000 of the cosine schedule alone turns
    # rounding into ~2e-4 errors of x̂0 for a one-step epsilon sampler (measured); what
    # remains in float64 is the float32 ᾱ (sqrt(ᾱ)² + sqrt(1−ᾱ)² = 1 only to ~1e-7)
    point = _randn(1, T, D, seed=6).clamp(-1, 1).double()  # [1, T, D]
    model = _oracle(s, point, prediction_type)
    x_T = _randn(B, T, D, seed=7).double()
    worst = 0.0
    for spacing in ("leading", "trailing", "linspace"):
        for n in (1, 5, 10, 100):
            out = ddim_sample(model, x_T, s, n, spacing=spacing, prediction_type=prediction_type)
            worst = max(worst, (out - point).abs().max().item())
    out = ddpm_sample(model, x_T, s, prediction_type=prediction_type,
                      generator=torch.Generator().manual_seed(0))
    ddpm_err = (out - point).abs().max().item()
    assert out.dtype == torch.float64
    assert worst < 1e-6, f"DDIM(eta=0) with an oracle ends {worst:.3g} from the data point"
    assert ddpm_err < 1e-6, f"DDPM with an oracle ends {ddpm_err:.3g} from the data point"


def test_pinned_noise_equals_generator_draws_and_callback_sees_each_step():
    s = NoiseSchedule()
    model, x_T = _random_model(), _randn(B, T, D, seed=8)
    g = torch.Generator().manual_seed(9)
    pinned = [torch.randn(B, T, D, generator=g) for _ in range(10)]
    seen = []
    a = ddim_sample(model, x_T, s, 10, eta=1.0, generator=torch.Generator().manual_seed(9),
                    step_callback=lambda i, t, x, x0: seen.append((i, t, x.shape, x0.shape)))
    b = ddim_sample(model, x_T, s, 10, eta=1.0, variance_noise=torch.stack(pinned))
    assert torch.equal(a, b)
    assert [(i, t) for i, t, _, _ in seen] == list(enumerate(ddim_timesteps(100, 10).tolist()))
    assert all(xs == (B, T, D) and x0s == (B, T, D) for _, _, xs, x0s in seen)
    d = ddim_sample(model, x_T, s, 10, eta=0.0)
    assert not torch.allclose(a, d, atol=1e-2), "eta=1 must inject the noise"
    # DDPM draws only for t > 0 (9 draws for 10 leading steps ending at t = 0)
    e = ddpm_sample(model, x_T, s, num_steps=10, generator=torch.Generator().manual_seed(9))
    f = ddpm_sample(model, x_T, s, num_steps=10, variance_noise=pinned)
    assert torch.equal(e, f)


def test_samplers_do_not_build_graphs():
    s = NoiseSchedule()
    lin = torch.nn.Linear(D, D)  # parameters require grad
    model = lambda x, t: torch.tanh(lin(x))  # noqa: E731
    x_T = _randn(B, T, D, seed=10)
    prefix = Prefix(torch.zeros(B, T, D), torch.ones(T), "guided")
    for out in (ddim_sample(model, x_T, s, 5), ddpm_sample(model, x_T, s, num_steps=5),
                ddim_sample(model, x_T, s, 5, prefix=prefix)):
        assert not out.requires_grad and out.grad_fn is None
    assert lin.weight.grad is None, "the guided VJP must not accumulate parameter gradients"


# ------------------------------------------------------------------ argument checks


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: ddim_timesteps(100, 0), r"num_steps must be in \[1, num_train_steps=100\]"),
        (lambda: ddim_timesteps(100, 101), r"num_steps must be in \[1, num_train_steps=100\]"),
        (lambda: ddim_timesteps(100, 10, "uniform"), "spacing must be one of"),
        (lambda: ddim_timesteps(100, 10.0), "num_steps must be an int"),
        (lambda: ddim_timesteps(100, 100, "leading", steps_offset=1), "outside"),
    ],
)
def test_bad_timestep_arguments_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_bad_sampler_and_target_arguments_raise():
    s = NoiseSchedule()
    model, x = _random_model(), _randn(B, T, D, seed=11)
    cases = [
        (lambda: ddim_sample(model, x, s, 0), "num_steps must be in"),
        (lambda: ddim_sample(model, x, s, 10, prediction_type="x0"), "prediction_type must be"),
        (lambda: ddim_sample(model, x, s, 10, eta=1.5), r"eta must be in \[0, 1\]"),
        (lambda: ddim_sample(model, x[0], s, 10), r"x_T must have shape \[B, T, D\]"),
        (lambda: ddim_sample(model, x.long(), s, 10), "floating-point"),
        (lambda: ddim_sample(model, x, "cosine", 10), "schedule must be a NoiseSchedule"),
        (lambda: ddim_sample(model, x, s, 10, clip_range=0.0), "clip_range must be > 0"),
        (lambda: ddim_sample(model, x, s, 4, eta=1.0, generator=torch.Generator(),
                             variance_noise=torch.zeros(4, B, T, D)), "not both"),
        (lambda: ddim_sample(model, x, s, 4, eta=1.0, variance_noise=torch.zeros(3, B, T, D)),
         "must hold 4 noise tensors"),
        (lambda: ddim_sample(model, x, s, 2, eta=1.0, variance_noise=torch.zeros(2, B, T, 1)),
         r"variance_noise\[0\] has shape"),
        (lambda: ddim_sample(lambda a, t: a[:, :1], x, s, 2), "model_fn returned shape"),
        (lambda: ddpm_sample(model, x, s, variance_type="learned"), "variance_type must be"),
        (lambda: ddpm_sample(model, x, s, num_steps=200), "num_steps must be in"),
        (lambda: q_sample(s, x, x, torch.full((B,), 100)), r"timesteps must lie in \[0, 100\)"),
        (lambda: q_sample(s, x, x, torch.zeros(B)), "integer tensor"),
        (lambda: q_sample(s, x, x, torch.zeros(B + 1, dtype=torch.long)), "shape"),
        (lambda: q_sample(s, x, x[:, :1], 0), "differ in shape"),
        (lambda: training_target(s, x, x, 0, "score"), "prediction_type must be"),
    ]
    for call, match in cases:
        with pytest.raises(ValueError, match=match):
            call()


def test_bad_prefix_raises():
    s = NoiseSchedule()
    model, x = _random_model(), _randn(B, T, D, seed=12)
    good_t, good_w = torch.zeros(B, T, D), torch.ones(T)
    cases = [
        (Prefix(good_t, good_w, "soft"), "prefix.mode must be one of"),
        (Prefix(torch.zeros(B, T - 1, D), good_w), "prefix.target must be a tensor"),
        (Prefix(good_t, torch.ones(T + 1)), r"prefix.weights must be a tensor \[T\]"),
        (Prefix(good_t, torch.full((T,), 1.5)), r"prefix.weights must lie in \[0, 1\]"),
        (Prefix(good_t, good_w, "guided", -1.0), "max_guidance must be >= 0"),
        (object(), "prefix must have a 'target' attribute"),
    ]
    for prefix, match in cases:
        with pytest.raises(ValueError, match=match):
            ddim_sample(model, x, s, 4, prefix=prefix)


# ------------------------------------------------------------------ prefix inpainting


def _prefix(mode, seed=13, batch=B):
    target = _randn(1, T, D, seed=seed).clamp(-1, 1).expand(batch, T, D)  # [B, T, D]
    weights = torch.tensor([1.0, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0, 0.0])  # [T]
    return Prefix(target, weights, mode)


def test_hard_prefix_reproduces_frozen_rows():
    s = NoiseSchedule()
    model, x_T = _random_model(), _randn(B, T, D, seed=14)
    p = _prefix("hard")
    outs = {
        "ddim eta=0": ddim_sample(model, x_T, s, 10, prefix=p),
        "ddim eta=1": ddim_sample(model, x_T, s, 10, eta=1.0, prefix=p,
                                  generator=torch.Generator().manual_seed(0)),
        "ddim trailing v": ddim_sample(model, x_T, s, 8, spacing="trailing",
                                       prediction_type="v_prediction", prefix=p),
        "ddpm": ddpm_sample(model, x_T, s, prefix=p, generator=torch.Generator().manual_seed(0)),
    }
    free = ddim_sample(model, x_T, s, 10)
    free_err = (free[:, :3] - p.target[:, :3]).abs().max().item()
    for name, out in outs.items():
        err = (out[:, :3] - p.target[:, :3]).abs().max().item()
        assert err < 1e-5, f"{name}: frozen rows {err:.3g} from the prefix (free: {free_err:.3g})"
        assert torch.isfinite(out).all()
    assert free_err > 0.1, f"the unconstrained sample already matches the prefix ({free_err:.3g})"


class GaussianProcessDenoiser:
    """Exact ε-denoiser for data ~ N(0, C) over time (each action dim independent).

    E[x0 | x_k] = sqrt(ᾱ) C (ᾱ C + (1−ᾱ) I)^-1 x_k; ε̂ = (x_k − sqrt(ᾱ) x̂0)/sqrt(1−ᾱ).
    Rows are correlated over ~3 steps, like a smooth trajectory, so a prefix should also
    pull the rows that follow it.
    """

    def __init__(self, schedule):
        idx = torch.arange(T, dtype=torch.float32)
        self.cov = 0.25 * torch.exp(-((idx[:, None] - idx[None, :]) ** 2) / 18.0)  # [T, T]
        self.cov = self.cov + 1e-4 * torch.eye(T)
        self.abar = schedule.alphas_cumprod

    def __call__(self, x, t):
        a = self.abar[t][:, None, None]  # [B, 1, 1]
        gain = a**0.5 * self.cov @ torch.linalg.inv(a * self.cov + (1 - a) * torch.eye(T))
        x0 = gain @ x  # [B, T, D]
        return (x - a**0.5 * x0) / (1 - a) ** 0.5


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_guided_prefix_pulls_output_toward_target(sampler):
    s = NoiseSchedule()
    model = GaussianProcessDenoiser(s)
    batch = 16
    x_T = _randn(batch, T, D, seed=15)
    target = torch.empty(batch, T, D)
    target[..., 0], target[..., 1] = 0.6, -0.4
    weights = torch.tensor([1.0, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0, 0.0])
    guided = Prefix(target, weights, "guided", 5.0)

    def run(prefix):
        if sampler == "ddim":
            return ddim_sample(model, x_T, s, 10, prefix=prefix)
        return ddpm_sample(model, x_T, s, num_steps=20, prefix=prefix,
                           generator=torch.Generator().manual_seed(2))

    free, pulled = run(None), run(guided)
    err_free = (free - target)[:, :3].abs().mean().item()
    err_guided = (pulled - target)[:, :3].abs().mean().item()
    assert err_guided < 0.25 * err_free, (
        f"{sampler}: guided prefix error {err_guided:.3g} vs unguided {err_free:.3g}")
    # the continuation (rows 3-4, partially weighted) is pulled too: no jump at the seam
    seam_free = (free - target)[:, 3:5].abs().mean().item()
    seam_guided = (pulled - target)[:, 3:5].abs().mean().item()
    assert seam_guided < 0.5 * seam_free, f"seam {seam_guided:.3g} vs {seam_free:.3g}"
    # Both modes replace the frozen rows; the guidance (through this denoiser's Jacobian)
    # also pulls the unconstrained continuation, the more the larger β, and keeps the
    # rows across the soft region smoother than replacement alone.
    hard, weak = run(Prefix(target, weights, "hard")), run(Prefix(target, weights, "guided", 0.5))
    assert (hard - target)[:, :3].abs().max().item() < 1e-5

    def continuation(out):  # rows 5-7: weight 0.25, 0, 0
        return (out - target)[:, 5:].abs().mean().item()

    def curvature(out):  # largest |second difference| over rows 1..6 (frozen → soft → free)
        return (out[:, 2:] - 2 * out[:, 1:-1] + out[:, :-2])[:, 1:6].abs().max().item()

    assert continuation(pulled) < continuation(weak) < continuation(hard), (
        continuation(pulled), continuation(weak), continuation(hard))
    assert curvature(pulled) < curvature(hard), (curvature(pulled), curvature(hard))


def test_guided_prefix_on_a_denoiser_that_ignores_its_input_is_the_replacement():
    """A denoiser whose data estimate does not depend on x_k (∂x̂0/∂x_k = 0, the limit of a
    model that has memorised its demonstrations) gives RTC's vector-Jacobian product
    nothing to act through: guided must then equal hard (frozen rows reached, soft rows
    blended), never the unconstrained chunk."""
    s = NoiseSchedule()
    mean = torch.full((1, T, D), -0.7)  # the model's only chunk, far from the prefix

    def model(x, t):  # "sample" parameterisation: x̂0 = mean whatever x_k
        return mean.expand_as(x)

    x_T = _randn(B, T, D, seed=18)
    target = torch.full((1, T, D), 0.6)
    weights = torch.tensor([1.0, 1.0, 0.8, 0.5, 0.2, 0.0, 0.0, 0.0])
    for sampler in ("ddim", "ddpm"):
        def run(prefix):
            if sampler == "ddim":
                return ddim_sample(model, x_T, s, 10, prediction_type="sample", prefix=prefix)
            return ddpm_sample(model, x_T, s, num_steps=10, prediction_type="sample", prefix=prefix,
                               generator=torch.Generator().manual_seed(3))
        free, hard, guided = run(None), run(Prefix(target, weights, "hard")), run(Prefix(target, weights, "guided"))
        torch.testing.assert_close(guided, hard)
        assert (guided[:, :2] - 0.6).abs().max().item() < 1e-5, f"{sampler}: frozen rows not reached"
        assert (free[:, :2] - 0.6).abs().min().item() > 1.0, f"{sampler}: the free chunk must be far from the prefix"


def test_accepts_the_shared_prefix_constraint_type():
    from genpolicy_ros.core.inpainting import PrefixConstraint

    s = NoiseSchedule()
    model, x_T = _random_model(), _randn(B, T, D, seed=16)
    target = _randn(1, T, D, seed=17).clamp(-1, 1)  # [1, T, D], broadcast over the batch
    weights = torch.tensor([1.0, 1.0, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0])
    hard = ddim_sample(model, x_T, s, 10, prefix=PrefixConstraint(target, weights, "hard"))
    err = (hard[:, :2] - target[:, :2]).abs().max().item()
    assert err < 1e-5, f"hard PrefixConstraint: frozen rows {err:.3g} off"
    guided = ddpm_sample(model, x_T, s, num_steps=10, generator=torch.Generator().manual_seed(0),
                         prefix=PrefixConstraint(target, weights, "guided"))
    assert guided.shape == (B, T, D) and torch.isfinite(guided).all()
