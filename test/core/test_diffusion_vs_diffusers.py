"""Our schedules and DDIM/DDPM samplers against huggingface diffusers (test-only peer).

Same model function, same noise → same samples within 1e-5 (float32).
"""
import itertools

import pytest
import torch

diffusers = pytest.importorskip(
    "diffusers", reason="diffusers is the test-only reference for the DDIM/DDPM samplers"
)

from genpolicy_ros.core.diffusion import ddim_sample, ddim_timesteps, ddpm_sample  # noqa: E402
from genpolicy_ros.core.schedules import NoiseSchedule  # noqa: E402

K = 100
B, T, D = 2, 6, 3
TOL = 1e-5


class FixedModel:
    """A fixed random nonlinear function of (x, t): tanh of a small linear map + t-term."""

    def __init__(self, seed: int = 1):
        g = torch.Generator().manual_seed(seed)
        self.mix = torch.randn(T, T, generator=g) / T**0.5  # [T, T]
        self.w = torch.randn(D, D, generator=g) * 0.7  # [D, D]
        self.c = torch.randn(D, generator=g)  # [D]
        self.calls = 0

    def __call__(self, x, t):
        assert t.dtype == torch.int64 and t.shape == (x.shape[0],)
        self.calls += 1
        h = torch.einsum("st,btd,de->bse", self.mix, x, self.w)  # [B, T, D]
        return torch.tanh(h + torch.sin(t.float() / 7.0)[:, None, None] * self.c)


def _x_T(seed=3):
    return torch.randn(B, T, D, generator=torch.Generator().manual_seed(seed))  # [B, T, D]


def _diffusers_ddim(model, x, sched, num_steps, eta, noise):
    sched.set_timesteps(num_steps)
    for i, t in enumerate(sched.timesteps):
        out = model(x, torch.full((B,), int(t), dtype=torch.int64))
        x = sched.step(out, t, x, eta=eta,
                       variance_noise=noise[i] if eta > 0 else None).prev_sample
    return x


@pytest.mark.parametrize("beta_schedule", ["linear", "scaled_linear", "squaredcos_cap_v2"])
def test_schedule_matches_diffusers(beta_schedule):
    ours = NoiseSchedule(K, beta_schedule)
    ref = diffusers.DDPMScheduler(num_train_timesteps=K, beta_schedule=beta_schedule)
    assert ours.betas.dtype == ours.alphas_cumprod.dtype == torch.float32
    assert ours.betas.shape == ours.alphas.shape == ours.alphas_cumprod.shape == (K,)
    # identical arithmetic → identical float32 values (see schedules.py for why)
    db = (ours.betas - ref.betas).abs().max().item()
    da = (ours.alphas_cumprod - ref.alphas_cumprod).abs().max().item()
    assert torch.equal(ours.betas, ref.betas), f"betas differ from diffusers by {db:.3g}"
    assert torch.equal(ours.alphas_cumprod, ref.alphas_cumprod), f"alphas_cumprod: {da:.3g}"
    assert torch.equal(ours.alphas, ref.alphas)


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
def test_timesteps_match_diffusers_for_every_step_count(spacing):
    ref = diffusers.DDIMScheduler(num_train_timesteps=K, timestep_spacing=spacing)
    bugged = []
    for n in range(1, K + 1):
        ref.set_timesteps(n)
        ours = ddim_timesteps(K, n, spacing)
        assert ours.dtype == torch.int64 and ours.shape == (n,), (spacing, n, ours)
        assert len(set(ours.tolist())) == n and ours.min() >= 0 and ours.max() < K, ours
        if spacing == "trailing" and len(ref.timesteps) == n + 1:
            # diffusers' float np.arange gives an extra timestep -1 for these N (K=100:
            # 29, 31, 58, 62, 97); we return its first N, the valid ones
            assert ref.timesteps[-1] == -1, ref.timesteps
            bugged.append(n)
            ref_steps = ref.timesteps[:n]
        else:
            ref_steps = ref.timesteps
        assert torch.equal(ours, ref_steps), (spacing, n, ours, ref.timesteps)
    if spacing == "trailing":
        assert bugged == [29, 31, 58, 62, 97], bugged
    assert ddim_timesteps(K, 8, "leading").tolist() == [84, 72, 60, 48, 36, 24, 12, 0]
    # steps_offset shifts leading spacing exactly as diffusers does
    ref = diffusers.DDIMScheduler(num_train_timesteps=K, steps_offset=1)
    ref.set_timesteps(10)
    assert torch.equal(ddim_timesteps(K, 10, "leading", steps_offset=1), ref.timesteps)


@pytest.mark.parametrize(
    "beta_schedule,spacing,prediction_type",
    list(itertools.product(["linear", "squaredcos_cap_v2"], ["leading", "trailing", "linspace"],
                           ["epsilon", "sample", "v_prediction"])),
)
def test_ddim_matches_diffusers(beta_schedule, spacing, prediction_type):
    schedule = NoiseSchedule(K, beta_schedule)
    worst = 0.0
    for num_steps, eta, clip in itertools.product([1, 8, 10, 100], [0.0, 1.0], [True, False]):
        model = FixedModel()
        x_T = _x_T()
        noise = torch.randn(num_steps, B, T, D, generator=torch.Generator().manual_seed(7))
        ref_sched = diffusers.DDIMScheduler(
            num_train_timesteps=K, beta_schedule=beta_schedule, clip_sample=clip,
            set_alpha_to_one=True, prediction_type=prediction_type, timestep_spacing=spacing)
        ref = _diffusers_ddim(model, x_T.clone(), ref_sched, num_steps, eta, noise)
        ours = ddim_sample(model, x_T.clone(), schedule, num_steps, eta=eta, spacing=spacing,
                           prediction_type=prediction_type, clip_sample=clip,
                           variance_noise=noise if eta > 0 else None)
        assert model.calls == 2 * num_steps
        assert torch.isfinite(ref).all()
        diff = (ours - ref).abs().max().item()
        worst = max(worst, diff)
        assert diff <= TOL, (
            f"N={num_steps} eta={eta} clip={clip}: max |ours - diffusers| = {diff:.3g}")
    # the comparison is not vacuous: the samples moved away from the initial noise
    assert (ours - x_T).abs().max() > 0.1


def test_ddim_generator_noise_matches_diffusers():
    """Without pinned noise both draw torch.randn(x.shape, generator) once per step."""
    schedule = NoiseSchedule(K, "squaredcos_cap_v2")
    model = FixedModel()
    x_T = _x_T()
    ref_sched = diffusers.DDIMScheduler(num_train_timesteps=K, beta_schedule="squaredcos_cap_v2")
    ref_sched.set_timesteps(10)
    x, gen = x_T.clone(), torch.Generator().manual_seed(5)
    for t in ref_sched.timesteps:
        out = model(x, torch.full((B,), int(t), dtype=torch.int64))
        x = ref_sched.step(out, t, x, eta=0.5, generator=gen).prev_sample
    ours = ddim_sample(model, x_T.clone(), schedule, 10, eta=0.5,
                       generator=torch.Generator().manual_seed(5))
    diff = (ours - x).abs().max().item()
    assert diff <= TOL, f"max |ours - diffusers| = {diff:.3g}"


@pytest.mark.parametrize(
    "beta_schedule,prediction_type,clip,variance_type,num_steps",
    [(bs, pt, clip, "fixed_small", None)
     for bs, pt, clip in itertools.product(["linear", "squaredcos_cap_v2"],
                                           ["epsilon", "sample", "v_prediction"], [True, False])]
    + [("squaredcos_cap_v2", "epsilon", True, "fixed_large", None),
       ("squaredcos_cap_v2", "epsilon", True, "fixed_small", 10),
       ("linear", "v_prediction", False, "fixed_small", 7)],
)
def test_ddpm_matches_diffusers(beta_schedule, prediction_type, clip, variance_type, num_steps):
    schedule = NoiseSchedule(K, beta_schedule)
    model = FixedModel()
    x_T = _x_T()
    ref_sched = diffusers.DDPMScheduler(
        num_train_timesteps=K, beta_schedule=beta_schedule, clip_sample=clip,
        prediction_type=prediction_type, variance_type=variance_type)
    ref_sched.set_timesteps(K if num_steps is None else num_steps)
    x, gen = x_T.clone(), torch.Generator().manual_seed(11)
    for t in ref_sched.timesteps:
        out = model(x, torch.full((B,), int(t), dtype=torch.int64))
        x = ref_sched.step(out, t, x, generator=gen).prev_sample
    ours = ddpm_sample(model, x_T.clone(), schedule, prediction_type=prediction_type,
                       clip_sample=clip, variance_type=variance_type, num_steps=num_steps,
                       generator=torch.Generator().manual_seed(11))
    n = K if num_steps is None else num_steps
    assert model.calls == 2 * n
    diff = (ours - x).abs().max().item()
    assert diff <= TOL, f"max |ours - diffusers| = {diff:.3g}"
    assert (ours - x_T).abs().max() > 0.1
