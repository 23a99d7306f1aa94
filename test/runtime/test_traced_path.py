"""The sampling path that graph backends capture reads no tensor back to the host.

A CUDA graph cannot contain a device→host read (``Tensor.__bool__``, ``.item()``, …): the
capture fails and the backend falls back to eager. There is no GPU here, so the rule is
checked on the CPU with a torch-function mode that raises on every such read, on any
tensor, while the unrolled sampler (what ``cuda_graph`` / ``onnxruntime`` / ``tensorrt``
trace) runs with an RTC prefix. The checks of the values live in ``policy.sample`` (once
per chunk) and in ``GraphBackend.sample`` (on the host, before the graph runs).
"""
import pytest
import torch
from torch.overrides import TorchFunctionMode

from genpolicy_ros.core.config import (
    ActionSpec,
    EncoderConfig,
    HorizonConfig,
    NetworkConfig,
    ObservationSpec,
    PolicyConfig,
)
from genpolicy_ros.core.policy import GenerativePolicy
from genpolicy_ros.runtime.backends import SamplerSettings, create_backend
from genpolicy_ros.runtime.backends.graph import GraphSpec, UnrolledSampler, obs_signature

HOST_READS = {torch.Tensor.__bool__, torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.__float__,
              torch.Tensor.__int__, torch.Tensor.__index__, torch.Tensor.numpy}


class HostRead(AssertionError):
    pass


class ForbidHostReads(TorchFunctionMode):
    """Raise :class:`HostRead` on any read of a tensor's values by Python."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in HOST_READS:
            raise HostRead(f"host read: Tensor.{func.__name__}")
        return func(*args, **(kwargs or {}))


def tiny_policy(kind, dit=False):
    net = NetworkConfig(name="dit", params={"d_model": 32, "n_heads": 2, "n_layers": 1}) if dit else \
        NetworkConfig(params={"down_dims": [16, 32]})
    cfg = PolicyConfig(
        action=ActionSpec(joint_names=["a", "b"], lower_limits=[-1.0, -2.0], upper_limits=[1.0, 0.5]),
        observation=ObservationSpec(state_names=["s0", "s1", "s2"]),
        kind=kind, horizon=HorizonConfig(T_o=2, T_p=8, T_a=4), network=net,
        encoder=EncoderConfig(params={"proprio_feature_dim": 8, "proprio_hidden": [16]}))
    policy = GenerativePolicy.from_config(cfg)
    g = torch.Generator().manual_seed(0)
    policy.fit_normalizers(torch.rand(32, 8, 2, generator=g) * 2 - 1, torch.rand(32, 2, 3, generator=g))
    return policy.eval()


OBS = {"state": torch.full((1, 2, 3), 0.3)}  # [1, T_o, D_s]
PREFIX = torch.full((1, 8, 2), 0.2)  # [1, T_p, D_a] robot units (padded, as the worker sends it)
WEIGHTS = torch.tensor([1.0, 1.0, 0.7, 0.4, 0.1, 0.0, 0.0, 0.0])  # [T_p]


def _unrolled(policy, sampler, with_prefix=True):
    settings = SamplerSettings(sampler=sampler, num_steps=4, eta=0.0 if sampler == "ddim" else None).resolved(policy)
    spec = GraphSpec(settings, obs_signature(OBS), (1, 8, 2), with_prefix)
    inputs = [torch.randn(1, 8, 2, generator=torch.Generator().manual_seed(1))]
    if with_prefix:
        inputs += [PREFIX, WEIGHTS]
    return UnrolledSampler(policy, spec), inputs + [OBS["state"]]


@pytest.mark.parametrize("kind,sampler,dit", [("flow", "flow", False), ("diffusion", "ddim", False),
                                              ("flow", "flow", True)])
def test_the_unrolled_sampler_with_an_rtc_prefix_reads_nothing_back(kind, sampler, dit):
    policy = tiny_policy(kind, dit)
    for with_prefix in (True, False):
        module, inputs = _unrolled(policy, sampler, with_prefix)
        with torch.no_grad(), ForbidHostReads():
            out = module(*inputs)  # raises HostRead on the first read
        assert out.shape == (1, 8, 2) and torch.isfinite(out).all()
        if with_prefix:  # and it is the constrained chunk: frozen rows on the prefix
            assert torch.allclose(out[0, :2], PREFIX[0, :2], atol=1e-5)


@pytest.mark.parametrize("kind,sampler", [("flow", "flow"), ("diffusion", "ddim")])
def test_the_checks_run_in_sample_where_the_detector_sees_them(kind, sampler):
    """The same call with its checks on does read values (so the detector works, and the
    values are still checked on the eager path), and a bad prefix is refused there."""
    policy = tiny_policy(kind)
    kw = dict(sampler=sampler, num_steps=4, prefix_actions=PREFIX, prefix_weights=WEIGHTS, prefix_mode="hard")
    with torch.no_grad(), pytest.raises(HostRead), ForbidHostReads():
        policy.sample(OBS, noise=torch.zeros(1, 8, 2), **kw)
    with pytest.raises(ValueError, match=r"weights must lie in \[0, 1\]"):
        policy.sample(OBS, noise=torch.zeros(1, 8, 2), **dict(kw, prefix_weights=WEIGHTS * 2))
    with pytest.raises(ValueError, match="NaN"):
        policy.sample(OBS, noise=torch.zeros(1, 8, 2), **dict(kw, prefix_actions=PREFIX * float("nan")))


def test_a_graph_backend_checks_prefix_values_on_the_host():
    """The graph itself checks nothing, so the backend must: a bad prefix is refused
    before the graph runs, a good one runs in the graph."""
    policy = tiny_policy("flow")
    backend = create_backend("onnxruntime", policy, "cpu")
    settings = SamplerSettings(sampler="flow", num_steps=4)
    backend.prepare(settings, OBS, with_prefix=True)
    noise = torch.randn(1, 8, 2, generator=torch.Generator().manual_seed(2))
    out = backend.sample(OBS, noise, settings, prefix_actions=PREFIX, prefix_weights=WEIGHTS, prefix_mode="hard")
    assert backend.last_path == "graph" and torch.allclose(out[0, :2], PREFIX[0, :2], atol=1e-4)
    with pytest.raises(ValueError, match=r"weights must lie in \[0, 1\]"):
        backend.sample(OBS, noise, settings, prefix_actions=PREFIX, prefix_weights=-WEIGHTS, prefix_mode="hard")
    with pytest.raises(ValueError, match="NaN"):
        backend.sample(OBS, noise, settings, prefix_actions=PREFIX * float("nan"), prefix_weights=WEIGHTS,
                       prefix_mode="hard")


def test_the_denoiser_checks_its_inputs_once_per_chunk_and_on_direct_calls():
    policy = tiny_policy("flow")
    calls = []
    original = policy.network.check_inputs
    policy.network.check_inputs = lambda *args: (calls.append(1), original(*args))[1]
    policy.sample(OBS, num_steps=6, guidance_scale=2.0, seed=0)  # 6 network calls (CFG batched)
    assert len(calls) == 1, f"{len(calls)} shape checks for one chunk"
    cond = policy.encode(OBS)  # [1, T_o, F]
    with pytest.raises(ValueError, match="cond"):  # outside a chunk, a direct call is checked
        policy.network(torch.zeros(1, 8, 2), torch.zeros(1), cond[:, :, :-1])
    assert len(calls) == 2
