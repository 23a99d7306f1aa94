"""Model directory round trip, integrity failures (no unpickling, ever), config validation,
and the robot-compatibility check."""
import dataclasses
import hashlib
import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save as safetensors_save

from genpolicy_ros.core.checkpoint import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    IncompatibleModelError,
    ModelLoadError,
    check_compatible,
    load_model_dir,
    save_model_dir,
)
from genpolicy_ros.core.config import (
    FORMAT_VERSION,
    ActionSpec,
    ConfigError,
    EncoderConfig,
    HorizonConfig,
    NetworkConfig,
    ObservationSpec,
    PolicyConfig,
)
from genpolicy_ros.core.policy import GenerativePolicy


def _config(kind="flow", **kw):
    return PolicyConfig(
        kind=kind,
        action=ActionSpec(["shoulder", "elbow"], [-3.0, -2.0], [3.0, 2.0]),
        observation=ObservationSpec(["q0", "q1", "q2"]),
        horizon=HorizonConfig(T_o=2, T_p=8, T_a=4, dt=0.05),
        network=NetworkConfig("unet1d", {"down_dims": [16, 32], "time_embed_dim": 32}),
        encoder=EncoderConfig({"proprio_feature_dim": 16, "proprio_hidden": [32]}),
        **kw,
    )


def _policy(kind="flow"):
    policy = GenerativePolicy.from_config(_config(kind))
    g = torch.Generator().manual_seed(7)
    policy.fit_normalizers(torch.randn(100, 8, 2, generator=g) * 0.7 + 0.2,
                           torch.randn(100, 2, 3, generator=g) * 2.0 - 1.0)
    with torch.no_grad():  # non-trivial weights everywhere (a fresh U-Net ends in zeros)
        for p in policy.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return policy.eval()


def _obs(batch=4):
    g = torch.Generator().manual_seed(11)
    return {"state": torch.randn(batch, 2, 3, generator=g)}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    policy = _policy()
    path = save_model_dir(policy, tmp_path_factory.mktemp("model"), extra_metadata={"dataset": "unit-test"})
    return policy, path


def _copy(saved_dir: Path, tmp_path: Path) -> Path:
    out = tmp_path / "copy"
    out.mkdir()
    for f in (CONFIG_FILE, WEIGHTS_FILE):
        (out / f).write_bytes((saved_dir / f).read_bytes())
    return out


def _rewrite_config(path: Path, edit):
    doc = json.loads((path / CONFIG_FILE).read_text())
    edit(doc)
    (path / CONFIG_FILE).write_text(json.dumps(doc))


def _record_hash(path: Path):
    digest = hashlib.sha256((path / WEIGHTS_FILE).read_bytes()).hexdigest()
    _rewrite_config(path, lambda d: d["weights"].update(sha256=digest))


# --------------------------------------------------------------------------- round trip
@pytest.mark.parametrize("kind,sampler", [("flow", "flow"), ("diffusion", "ddim")])
def test_round_trip_gives_bit_identical_chunks(tmp_path, kind, sampler):
    policy = _policy(kind)
    save_model_dir(policy, tmp_path)
    loaded = load_model_dir(tmp_path)
    noise = torch.randn(4, 8, 2, generator=torch.Generator().manual_seed(3))  # [B, T_p, D_a]
    a = policy.sample(_obs(), sampler=sampler, noise=noise)
    b = loaded.sample(_obs(), sampler=sampler, noise=noise)
    assert torch.equal(a, b), f"max difference after reload {(a - b).abs().max().item()}"
    assert loaded.config == policy.config
    assert torch.equal(loaded.action_normalizer.max, policy.action_normalizer.max)
    assert torch.equal(loaded.state_normalizer.min, policy.state_normalizer.min)
    assert not loaded.training


def test_config_json_records_hash_version_and_metadata(saved):
    _, path = saved
    doc = json.loads((path / CONFIG_FILE).read_text())
    assert doc["format_version"] == FORMAT_VERSION
    assert doc["weights"]["sha256"] == hashlib.sha256((path / WEIGHTS_FILE).read_bytes()).hexdigest()
    assert doc["metadata"] == {"dataset": "unit-test"}
    assert doc["action"]["joint_names"] == ["shoulder", "elbow"]
    assert doc["created_by"].startswith("genpolicy_ros")


# --------------------------------------------------------------------------- failures
def test_truncated_weights_file(saved, tmp_path):
    path = _copy(saved[1], tmp_path)
    blob = (path / WEIGHTS_FILE).read_bytes()
    (path / WEIGHTS_FILE).write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ModelLoadError, match=r"model\.safetensors: truncated"):
        load_model_dir(path)


def test_flipped_byte_fails_the_hash(saved, tmp_path):
    path = _copy(saved[1], tmp_path)
    blob = bytearray((path / WEIGHTS_FILE).read_bytes())
    blob[-5] ^= 0x01  # inside the tensor data: still a well-formed safetensors file
    (path / WEIGHTS_FILE).write_bytes(bytes(blob))
    with pytest.raises(ModelLoadError, match=r"model\.safetensors: sha256 mismatch"):
        load_model_dir(path)


def test_missing_files(saved, tmp_path):
    path = _copy(saved[1], tmp_path)
    (path / WEIGHTS_FILE).unlink()
    with pytest.raises(ModelLoadError, match=r"model\.safetensors: missing"):
        load_model_dir(path)
    (path / CONFIG_FILE).unlink()
    with pytest.raises(ModelLoadError, match=r"config\.json: missing"):
        load_model_dir(path)


def test_wrong_format_version_and_invalid_json(saved, tmp_path):
    path = _copy(saved[1], tmp_path)
    _rewrite_config(path, lambda d: d.update(format_version=99))
    with pytest.raises(ModelLoadError, match=r"config\.json: unsupported format_version 99"):
        load_model_dir(path)
    (path / CONFIG_FILE).write_text('{"format_version": 1, ')
    with pytest.raises(ModelLoadError, match=r"config\.json: not valid JSON"):
        load_model_dir(path)


def test_invalid_policy_config_names_the_field(saved, tmp_path):
    path = _copy(saved[1], tmp_path)
    _rewrite_config(path, lambda d: d["horizon"].update(T_a=99))
    with pytest.raises(ModelLoadError, match=r"HorizonConfig\.T_a: must be <= T_p \(8\), got 99"):
        load_model_dir(path)


def test_shape_mismatch_names_both_shapes(saved, tmp_path):
    path = _copy(saved[1], tmp_path)
    _rewrite_config(path, lambda d: d["encoder"]["params"].update(proprio_feature_dim=24))
    with pytest.raises(ModelLoadError, match=r"shape mismatch for 'null_cond': file has \(2, 16\), "
                                             r"model built from config\.json expects \(2, 24\)"):
        load_model_dir(path)


def test_missing_tensor_is_named(saved, tmp_path):
    policy, saved_dir = saved
    path = _copy(saved_dir, tmp_path)
    tensors = {k: v.contiguous().clone() for k, v in policy.state_dict().items() if k != "action_normalizer.max"}
    (path / WEIGHTS_FILE).write_bytes(safetensors_save(tensors))
    _record_hash(path)  # a consistent but incomplete directory
    with pytest.raises(ModelLoadError, match=r"missing tensors \['action_normalizer\.max'\]"):
        load_model_dir(path)


class _Tripwire:
    """Unpickling this touches ``self.flag`` (harmless, but proves code ran)."""

    def __init__(self, flag):
        self.flag = str(flag)

    def __reduce__(self):
        return (Path.touch, (Path(self.flag),))


def test_pickle_payload_is_never_executed(saved, tmp_path):
    payload_flag = tmp_path / "proof_the_payload_works"
    pickle.loads(pickle.dumps(_Tripwire(payload_flag)))
    assert payload_flag.exists(), "the tripwire must fire when unpickled, else this test proves nothing"

    flag = tmp_path / "unpickled"
    path = _copy(saved[1], tmp_path)
    (path / WEIGHTS_FILE).write_bytes(pickle.dumps({"weights": _Tripwire(flag)}))
    _record_hash(path)  # the hash matches, so only the format check stands in the way
    with pytest.raises(ModelLoadError, match=r"model\.safetensors: not a safetensors file: it looks like a pickle"):
        load_model_dir(path)
    assert not flag.exists(), "loading executed a pickle payload"

    torch.save({"weights": _Tripwire(flag)}, path / WEIGHTS_FILE)  # torch's zip+pickle format
    _record_hash(path)
    with pytest.raises(ModelLoadError, match=r"model\.safetensors: not a safetensors file: it looks like a zip"):
        load_model_dir(path)
    assert not flag.exists(), "loading executed a torch.save pickle payload"


# --------------------------------------------------------------------------- config
def test_config_json_round_trip_and_rejections():
    cfg = _config(cond_dropout=0.2, seed=5)
    assert PolicyConfig.from_json(cfg.to_json()) == cfg
    data = cfg.to_dict()
    with pytest.raises(ConfigError, match=r"PolicyConfig: unknown keys \['colour'\]"):
        PolicyConfig.from_dict({**data, "colour": "red"})
    with pytest.raises(ConfigError, match=r"PolicyConfig\.horizon: unknown keys \['T_x'\]"):
        PolicyConfig.from_dict({**data, "horizon": {**data["horizon"], "T_x": 1}})
    with pytest.raises(ConfigError, match=r"format_version: unsupported version 2"):
        PolicyConfig.from_dict({**data, "format_version": 2})
    with pytest.raises(ConfigError, match=r"format_version: missing"):
        PolicyConfig.from_dict({k: v for k, v in data.items() if k != "format_version"})
    with pytest.raises(ConfigError, match=r"PolicyConfig\.kind: must be one of"):
        dataclasses.replace(cfg, kind="gan")
    with pytest.raises(ConfigError, match=r"ActionSpec\.upper_limits: has 1 entries but joint_names has 2"):
        ActionSpec(["a", "b"], [0.0, 0.0], [1.0])
    with pytest.raises(ConfigError, match=r"ActionSpec\.joint_names: duplicate names \['a'\]"):
        ActionSpec(["a", "a"], [0.0, 0.0], [1.0, 1.0])
    with pytest.raises(ConfigError, match=r"PolicyConfig\.cond_dropout: must be in \[0, 1\)"):
        dataclasses.replace(cfg, cond_dropout=1.0)


# --------------------------------------------------------------------------- compatibility
def test_check_compatible_names_the_mismatch():
    cfg = dataclasses.replace(_config(), observation=ObservationSpec(["q0", "q1", "q2"], ["wrist"], (64, 80)))
    check_compatible(cfg, joint_names=["elbow", "shoulder"], state_dim=3, image_sizes={"wrist": (64, 80)})
    with pytest.raises(IncompatibleModelError, match=r"missing on robot: \['elbow'\], not in model: \['wrist_roll'\]"):
        check_compatible(cfg, joint_names=["shoulder", "wrist_roll"])
    with pytest.raises(IncompatibleModelError, match=r"state dim: model expects 3"):
        check_compatible(cfg, state_dim=7)
    with pytest.raises(IncompatibleModelError, match=r"camera 'wrist': model expects image size \(H, W\) = "
                                                     r"\(64, 80\), got \(96, 96\)"):
        check_compatible(cfg, image_sizes={"wrist": (96, 96)})
    with pytest.raises(IncompatibleModelError, match=r"camera 'wrist': required by the model"):
        check_compatible(cfg, image_sizes={"front": (64, 80)})
