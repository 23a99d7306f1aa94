"""Inference backends: every available backend computes eager's chunk; unavailable ones say why;
``auto`` falls back with a log line; the engine cache keys on what an engine depends on and
survives corrupt entries."""
import copy
import json
import logging

import pytest
import torch

from genpolicy_ros.core.config import (
    ActionSpec,
    EncoderConfig,
    HorizonConfig,
    NetworkConfig,
    ObservationSpec,
    PolicyConfig,
)
from genpolicy_ros.core.policy import GenerativePolicy
from genpolicy_ros.runtime.backends import (
    BACKENDS,
    AutoBackend,
    BackendError,
    SamplerSettings,
    create_backend,
    make_noise,
)
from genpolicy_ros.runtime.backends.base import graph_unsupported_reason
from genpolicy_ros.runtime.backends.cache import EngineCache, EngineKey, weights_digest

TOL = 1e-4


def tiny_policy(kind: str, *, seed: int = 0, down_dims=(16, 32)) -> GenerativePolicy:
    """Small random-init policy (~0.25 M params) with non-trivial normaliser statistics."""
    cfg = PolicyConfig(
        action=ActionSpec(joint_names=["a", "b", "c"], lower_limits=[-1.0, -2.0, 0.0], upper_limits=[1.0, 0.5, 3.0]),
        observation=ObservationSpec(state_names=["s0", "s1", "s2", "s3"]),
        kind=kind, horizon=HorizonConfig(T_o=2, T_p=8, T_a=4),
        network=NetworkConfig(params={"down_dims": list(down_dims)}),
        encoder=EncoderConfig(params={"proprio_feature_dim": 16, "proprio_hidden": [32]}), seed=seed)
    policy = GenerativePolicy.from_config(cfg)
    g = torch.Generator().manual_seed(seed)
    policy.fit_normalizers(torch.rand(64, 8, 3, generator=g) * 4 - 2, torch.rand(64, 2, 4, generator=g) * 3)
    return policy.eval()


OBS = {"state": torch.linspace(0.0, 3.0, 8).reshape(1, 2, 4)}  # [1, T_o, D_s]


def reference(policy, settings, noise, **kw):
    with torch.no_grad():
        return policy.sample(OBS, noise=noise, **settings.policy_kwargs(), **kw)


CPU_BACKENDS = [name for name in BACKENDS if name not in ("cuda_graph", "tensorrt")]


@pytest.fixture(scope="module")
def policies():
    return {"flow": tiny_policy("flow"), "diffusion": tiny_policy("diffusion")}


@pytest.fixture(scope="module")
def onnx_backends(policies, tmp_path_factory):
    """One prepared ONNX Runtime backend per kind (export is the slow part: do it once)."""
    ok, reason = BACKENDS["onnxruntime"].available("cpu")
    if not ok:
        pytest.skip(reason)
    cache = tmp_path_factory.mktemp("engines")
    out = {}
    for kind, sampler in (("flow", "flow"), ("diffusion", "ddim")):
        backend = create_backend("onnxruntime", policies[kind], "cpu", cache)
        settings = SamplerSettings(sampler=sampler, num_steps=10, eta=0.0 if sampler == "ddim" else None)
        backend.prepare(settings, OBS, with_prefix=(kind == "flow"))
        out[kind] = (backend, settings)
    return out


@pytest.mark.parametrize("kind", ["flow", "diffusion"])
def test_onnxruntime_matches_eager(onnx_backends, policies, kind):
    backend, settings = onnx_backends[kind]
    for seed in (3, 4):
        noise = make_noise((1, 8, 3), seed)
        got = backend.sample(OBS, noise, settings)
        assert backend.last_path == "graph"
        ref = reference(policies[kind], settings, noise)
        err = (got - ref).abs().max().item()
        assert err < TOL, f"{kind}: onnxruntime vs eager max abs err {err:.3g}"
        assert ref.abs().max().item() > 0.1, "reference chunk is trivially small"
    # a different noise gives a different chunk: the noise really is a graph input
    other = backend.sample(OBS, make_noise((1, 8, 3), 99), settings)
    assert (other - got).abs().max().item() > 1e-3


def test_onnxruntime_hard_prefix_is_in_the_graph(onnx_backends, policies):
    backend, settings = onnx_backends["flow"]
    noise = make_noise((1, 8, 3), 7)
    prefix = torch.tensor([[0.5, -1.0, 2.0]]).repeat(1, 8, 1)  # [1, T_p, D_a] robot units
    for weights in ([1, 1, 1, 0.5, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1, 0.2, 0]):
        w = torch.tensor(weights, dtype=torch.float32)  # [T_p]
        got = backend.sample(OBS, noise, settings, prefix_actions=prefix, prefix_weights=w, prefix_mode="hard")
        assert backend.last_path == "graph"
        ref = reference(policies["flow"], settings, noise, prefix_actions=prefix, prefix_weights=w,
                        prefix_mode="hard")
        err = (got - ref).abs().max().item()
        assert err < TOL, f"hard prefix {weights}: max abs err {err:.3g}"
        frozen = int((w == 1).sum())
        assert torch.allclose(got[0, :frozen], prefix[0, :frozen], atol=1e-4), "frozen rows must equal the prefix"


def test_settings_the_graph_cannot_express_use_the_per_step_path(onnx_backends, policies):
    backend, settings = onnx_backends["flow"]
    noise = make_noise((1, 8, 3), 1)
    not_built = "settings/shapes not prepared"
    for other, why in ((SamplerSettings(sampler="flow", num_steps=10, guidance_scale=2.0), not_built),
                       (SamplerSettings(sampler="flow", num_steps=4), not_built)):
        got = backend.sample(OBS, noise, other)
        assert backend.last_path.startswith(f"per_step: {why}"), backend.last_path
        err = (got - reference(policies["flow"], other, noise)).abs().max().item()
        assert err < TOL, f"per-step path ({why}) max abs err {err:.3g}"
    assert backend.graph_status(SamplerSettings(sampler="flow", num_steps=4), OBS) == ("build", ""), \
        "settings a graph can express but that are not built yet can be built"
    assert backend.graph_status(settings, OBS) == ("graph", "")
    assert backend.graph_status(SamplerSettings(sampler="flow", num_steps=10, guidance_scale=2.0), OBS)[0] == "build", \
        "classifier-free guidance is captured by a graph (w is a graph constant)"
    # RTC guided inpainting differentiates through the denoiser: eager
    prefix = torch.zeros(1, 3, 3)  # [1, k, D_a]
    got = backend.sample(OBS, noise, settings, prefix_actions=prefix, prefix_mode="guided")
    assert backend.last_path.startswith("eager: prefix_mode=guided"), backend.last_path
    ref = reference(policies["flow"], settings, noise, prefix_actions=prefix, prefix_mode="guided")
    assert torch.allclose(got, ref, atol=1e-6)
    assert graph_unsupported_reason(SamplerSettings(sampler="ddim", eta=0.5), None) is not None
    assert graph_unsupported_reason(SamplerSettings(sampler="ddpm"), None) is not None


def test_ddim_eta_and_ddpm_use_the_per_step_path(onnx_backends, policies):
    backend, _ = onnx_backends["diffusion"]
    for other in (SamplerSettings(sampler="ddim", num_steps=5, eta=0.0), SamplerSettings(sampler="ddpm", num_steps=5)):
        noise = make_noise((1, 8, 3), 3)
        torch.manual_seed(0)  # DDPM draws fresh noise inside the loop from the global RNG
        got = backend.sample(OBS, noise, other)
        assert backend.last_path.startswith("per_step: "), backend.last_path
        torch.manual_seed(0)
        err = (got - reference(policies["diffusion"], other, noise)).abs().max().item()
        assert err < TOL, f"{other.sampler} per-step max abs err {err:.3g}"


GPU_ONLY = ("cuda_graph", "tensorrt", "torch_tensorrt")


@pytest.mark.parametrize("name", GPU_ONLY)
def test_gpu_backends_report_a_reason_when_unavailable(name):
    ok, reason = BACKENDS[name].available("cuda")
    if ok:
        pytest.skip(f"{name} is available here: test_gpu_backend_matches_eager runs it")
    assert isinstance(reason, str) and len(reason) > 10, reason
    with pytest.raises(BackendError, match=f"backend {name} unavailable: "):
        create_backend(name, tiny_policy("flow"), "cuda")


GPU_CASES = [("cuda_graph", "fp32"), ("cuda_graph", "fp16"), ("tensorrt", "fp32"), ("tensorrt", "fp16"),
             ("torch_tensorrt", "fp32"), ("torch_tensorrt", "fp16"), ("compile", "fp32"), ("compile", "fp16"),
             ("eager", "fp16"), ("onnxruntime", "fp32")]


@pytest.mark.parametrize("name,precision", GPU_CASES)
def test_gpu_backend_matches_eager(name, precision, tmp_path):
    """Runs whenever a CUDA device is present (skipped with the reason otherwise)."""
    if not torch.cuda.is_available():
        pytest.skip(f"no CUDA device visible to torch {torch.__version__}; runs on any machine with a GPU")
    ok, reason = BACKENDS[name].available("cuda")
    if not ok:
        pytest.skip(f"{name} not usable on this GPU machine: {reason}")
    policy = tiny_policy("flow")
    cpu_ref = copy.deepcopy(policy)  # the fp32 eager reference stays on the CPU
    settings = SamplerSettings(sampler="flow", num_steps=10)
    backend = create_backend(name, policy, "cuda", tmp_path, precision=precision)
    backend.prepare(settings, OBS, with_prefix=(name != "eager"))
    assert next(policy.parameters()).device.type == "cuda", f"{name} left the policy on the CPU"
    tol = 1e-2 if precision == "fp16" else TOL
    prefix = torch.tensor([[0.5, -1.0, 2.0]]).repeat(1, 8, 1)  # [1, T_p, D_a]
    weights = torch.tensor([1, 1, 1, 0.5, 0, 0, 0, 0], dtype=torch.float32)  # [T_p]
    for seed, kw in ((3, {}), (4, {"prefix_actions": prefix, "prefix_weights": weights, "prefix_mode": "hard"})):
        noise = make_noise((1, 8, 3), seed)
        got = backend.sample(OBS, noise, settings, **kw)
        if name != "eager":
            assert backend.last_path == "graph", backend.last_path
        ref = reference(cpu_ref, settings, noise, **kw)
        scale = max(1.0, ref.abs().max().item())
        err = (got.cpu() - ref).abs().max().item()
        assert got.device.type == "cpu" and err <= tol * scale, f"{name} {precision}: max abs err {err:.3g}"
    backend.close()


@pytest.mark.parametrize("name", ["eager", "onnxruntime", "compile", "auto"])
def test_fp16_on_the_cpu_is_refused_with_a_reason(name, policies):
    if name != "auto" and not BACKENDS[name].available("cpu")[0]:
        pytest.skip(BACKENDS[name].available("cpu")[1])
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        create_backend(name, policies["flow"], "cpu", precision="fp16")


def test_torch_tensorrt_picks_the_fp16_keywords_its_release_offers():
    from genpolicy_ros.runtime.backends.torch_trt import conversion_kwargs

    x = [torch.zeros(1)]
    newer = conversion_kwargs({"arg_inputs", "use_explicit_typing", "enable_autocast", "low_precision_type",
                               "enabled_precisions", "workspace_size"}, "fp16", x, 1 << 30)
    assert newer["enable_autocast"] is True and newer["low_precision_type"] == torch.float16
    assert newer["use_explicit_typing"] is True and "enabled_precisions" not in newer
    older = conversion_kwargs({"inputs", "enabled_precisions", "use_explicit_typing"}, "fp16", x, 1 << 30)
    assert torch.float16 in older["enabled_precisions"] and older["use_explicit_typing"] is False
    assert older["inputs"] == x and "workspace_size" not in older
    fp32 = conversion_kwargs({"arg_inputs", "enable_autocast", "low_precision_type"}, "fp32", x, 1 << 30)
    assert "enable_autocast" not in fp32 and fp32["arg_inputs"] == x
    with pytest.raises(BackendError, match="neither autocast nor enabled_precisions"):
        conversion_kwargs({"arg_inputs"}, "fp16", x, 1 << 30)


@pytest.mark.slow
def test_compile_matches_eager(policies):
    ok, reason = BACKENDS["compile"].available("cpu")
    if not ok:
        pytest.skip(reason)
    backend = create_backend("compile", policies["flow"], "cpu")
    settings = SamplerSettings(sampler="flow", num_steps=10)
    backend.prepare(settings, OBS)
    noise = make_noise((1, 8, 3), 5)
    err = (backend.sample(OBS, noise, settings) - reference(policies["flow"], settings, noise)).abs().max().item()
    assert backend.last_path == "graph" and err < TOL, f"compile vs eager max abs err {err:.3g}"


def test_auto_falls_back_with_a_log_line(policies, caplog):
    policy = policies["flow"]
    settings = SamplerSettings(sampler="flow", num_steps=2)
    auto = create_backend("auto", policy, "cpu", order=("tensorrt", "eager"))
    assert isinstance(auto, AutoBackend)
    with caplog.at_level(logging.WARNING, logger="genpolicy_ros.runtime.backends"):
        auto.prepare(settings, OBS)
    assert auto.chosen_name == "eager"
    lines = [r.getMessage() for r in caplog.records]
    assert any(line.startswith("backend tensorrt unavailable: ") and line.endswith("; using eager")
               for line in lines), lines
    noise = make_noise((1, 8, 3), 0)
    assert torch.equal(auto.sample(OBS, noise, settings), reference(policy, settings, noise))


def test_auto_skips_a_backend_whose_build_fails(policies, caplog):
    # DDPM draws fresh noise in its loop and cannot be captured: the graph backends' prepare
    # fails, auto logs each and uses eager
    settings = SamplerSettings(sampler="ddpm", num_steps=3)
    auto = create_backend("auto", policies["diffusion"], "cpu")
    with caplog.at_level(logging.WARNING, logger="genpolicy_ros.runtime.backends"):
        auto.prepare(settings, OBS)
    assert auto.chosen_name == "eager"
    assert any("backend onnxruntime unavailable: " in r.getMessage() and "ddpm" in r.getMessage()
               for r in caplog.records), [r.getMessage() for r in caplog.records]


def test_classifier_free_guidance_runs_in_the_graph(onnx_backends, policies, tmp_path):
    policy = policies["flow"]
    settings = SamplerSettings(sampler="flow", num_steps=4, guidance_scale=2.5)
    backend = create_backend("onnxruntime", policy, "cpu", tmp_path)
    backend.prepare(settings, OBS)
    noise = make_noise((1, 8, 3), 6)
    got = backend.sample(OBS, noise, settings)
    assert backend.last_path == "graph"
    err = (got - reference(policy, settings, noise)).abs().max().item()
    assert err < TOL, f"CFG graph max abs err {err:.3g}"
    plain = reference(policy, SamplerSettings(sampler="flow", num_steps=4), noise)
    assert (got - plain).abs().max().item() > 1e-3, "the guidance weight must change the chunk"


def test_unknown_backend_name_is_rejected(policies):
    with pytest.raises(ValueError, match="unknown backend 'fast'"):
        create_backend("fast", policies["flow"])


# --------------------------------------------------------------------------- cache
def _key(**over):
    base = dict(backend="onnxruntime:unrolled", weights_sha256="w", code_sha256="c", device="cpu",
                versions={"torch": "2"}, precision="fp32", shapes={"noise": [1, 8, 3]},
                sampler={"sampler": "flow", "num_steps": 10})
    base.update(over)
    return EngineKey(**base)


def test_cache_key_changes_with_weights_precision_shape_and_steps():
    p1, p2 = tiny_policy("flow", seed=0), tiny_policy("flow", seed=0)
    assert weights_digest(p1) == weights_digest(p2)
    with torch.no_grad():
        next(p2.network.parameters()).view(-1)[0] += 1e-3
    assert weights_digest(p1) != weights_digest(p2), "a changed weight must change the digest"
    k = _key()
    variants = [_key(weights_sha256="w2"), _key(precision="fp16"), _key(shapes={"noise": [1, 16, 3]}),
                _key(sampler={"sampler": "flow", "num_steps": 5}), _key(device="NVIDIA H100 (sm_90)"),
                _key(versions={"torch": "3"}), _key(code_sha256="c2")]
    digests = {v.digest for v in variants}
    assert k.digest not in digests and len(digests) == len(variants)
    assert _key().digest == k.digest, "the digest must be deterministic"


def test_code_digest_covers_the_policy_and_the_export_code(tmp_path, monkeypatch):
    from genpolicy_ros.runtime.backends.cache import CODE_PACKAGES, code_digest

    assert set(CODE_PACKAGES) == {"genpolicy_ros.core", "genpolicy_ros.runtime.backends"}
    pkg = tmp_path / "fakepkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "sampler.py").write_text("STEPS = 10\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = code_digest.__wrapped__(("fakepkg",))
    (pkg / "sampler.py").write_text("STEPS = 11\n")
    assert code_digest.__wrapped__(("fakepkg",)) != before, "a code change must change the engine key"


def test_corrupt_cache_entry_is_rebuilt(tmp_path, policies, caplog):
    policy = policies["flow"]
    settings = SamplerSettings(sampler="flow", num_steps=2)
    first = create_backend("onnxruntime", policy, "cpu", tmp_path)
    first.prepare(settings, OBS)
    assert list(first.build_info.values())[0]["cache"] == "miss"
    manifests = {json.loads(p.read_text())["key"]["backend"]: p for p in tmp_path.glob("*.json")}
    assert sorted(manifests) == ["onnxruntime:denoiser", "onnxruntime:unrolled"], sorted(manifests)
    manifest = json.loads(manifests["onnxruntime:unrolled"].read_text())
    assert manifest["key"]["precision"] == "fp32" and manifest["key"]["sampler"]["num_steps"] == 2
    engines = [tmp_path / manifest["file"]]

    second = create_backend("onnxruntime", policy, "cpu", tmp_path)
    second.prepare(settings, OBS)
    assert list(second.build_info.values())[0]["cache"] == "hit"

    data = engines[0].read_bytes()
    engines[0].write_bytes(data[: len(data) // 2] + b"garbage")  # truncated + tampered
    third = create_backend("onnxruntime", policy, "cpu", tmp_path)
    with caplog.at_level(logging.WARNING):
        third.prepare(settings, OBS)
    assert list(third.build_info.values())[0]["cache"] == "miss"
    assert any("corrupt" in r.getMessage() for r in caplog.records)
    assert engines[0].read_bytes() == data, "the rebuilt engine replaces the corrupt one"
    noise = make_noise((1, 8, 3), 2)
    err = (third.sample(OBS, noise, settings) - reference(policy, settings, noise)).abs().max().item()
    assert err < TOL, f"rebuilt engine max abs err {err:.3g}"


def test_cache_rejects_a_manifest_for_another_key(tmp_path):
    cache = EngineCache(tmp_path)
    cache.store(_key(), "onnx", b"engine-bytes")
    assert cache.load(_key(), "onnx") == b"engine-bytes"
    (tmp_path / f"{_key().digest}.json").write_text("{not json")
    assert cache.load(_key(), "onnx") is None
    assert not list(tmp_path.iterdir()), "a corrupt entry is removed"


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_openvino_matches_eager_and_reloads_its_compiled_blob(policies, tmp_path, precision):
    ok, reason = BACKENDS["openvino"].available("cpu")
    if not ok:
        pytest.skip(reason)
    from genpolicy_ros.runtime.backends.openvino import cpu_has_bf16

    if precision == "bf16" and not cpu_has_bf16():
        with pytest.raises(ValueError, match="AVX512_BF16 or AMX"):
            create_backend("openvino", policies["flow"], "cpu", tmp_path, precision="bf16")
        return
    settings = SamplerSettings(sampler="flow", num_steps=10)
    first = create_backend("openvino", policies["flow"], "cpu", tmp_path, precision=precision)
    first.prepare(settings, OBS, with_prefix=True)
    assert [i["cache"] for i in first.build_info.values()] == ["miss"]
    second = create_backend("openvino", policies["flow"], "cpu", tmp_path, precision=precision)
    second.prepare(settings, OBS, with_prefix=True)
    assert [i["cache"] for i in second.build_info.values()] == ["hit"], "the compiled blob is reused"
    tol = 5e-2 if precision == "bf16" else TOL
    prefix = torch.tensor([[0.5, -1.0, 2.0]]).repeat(1, 8, 1)  # [1, T_p, D_a]
    weights = torch.tensor([1, 1, 1, 0.5, 0, 0, 0, 0], dtype=torch.float32)  # [T_p]
    for seed, kw in ((3, {}), (4, {"prefix_actions": prefix, "prefix_weights": weights, "prefix_mode": "hard"})):
        noise = make_noise((1, 8, 3), seed)
        got = second.sample(OBS, noise, settings, **kw)
        assert second.last_path == "graph"
        ref = reference(policies["flow"], settings, noise, **kw)
        err = (got - ref).abs().max().item()
        assert err <= tol * max(1.0, ref.abs().max().item()), f"openvino {precision}: max abs err {err:.3g}"
    with pytest.raises(ValueError, match="has no bf16"):
        create_backend("onnxruntime", policies["flow"], "cpu", precision="bf16")
