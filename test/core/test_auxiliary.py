"""Training-only auxiliary state (core.config.AuxiliaryConfig): config, loss, head, gradients."""
import pytest
import torch

from genpolicy_ros.core.config import (
    ActionSpec,
    AuxiliaryConfig,
    ConfigError,
    EncoderConfig,
    HorizonConfig,
    NetworkConfig,
    ObservationSpec,
    PolicyConfig,
)
from genpolicy_ros.core.policy import GenerativePolicy

T_O, T_P = 2, 8


def _config(aux_names=("hidden_x", "hidden_y"), weight=1.0, kind="flow"):
    return PolicyConfig(
        kind=kind,
        action=ActionSpec(["j0", "j1"], [-3.0, -3.0], [3.0, 3.0]),
        observation=ObservationSpec(["j0", "j1"]),
        horizon=HorizonConfig(T_o=T_O, T_p=T_P, T_a=4),
        network=NetworkConfig("unet1d", {"down_dims": [16, 32], "time_embed_dim": 16}),
        encoder=EncoderConfig({"proprio_feature_dim": 16, "proprio_hidden": [32]}),
        auxiliary=AuxiliaryConfig(state_names=aux_names, weight=weight),
        cond_dropout=0.0,
    )


def _batch(B=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    state = torch.rand(B, T_O, 2, generator=g) * 2 - 1  # [B, T_o, 2]
    aux = torch.stack([state[..., 0] * 3.0, state[..., 1] - 5.0], dim=-1)  # [B, T_o, 2] a function of the state
    action = torch.rand(B, T_P, 2, generator=g)  # [B, T_p, 2]
    return {"obs": {"state": state}, "action": action, "aux_state": aux}


def test_config_round_trips_and_refuses_overlap_and_negative_weight():
    cfg = _config()
    assert PolicyConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.to_dict()["auxiliary"] == {"state_names": ["hidden_x", "hidden_y"], "weight": 1.0, "from_images": False}
    with pytest.raises(ConfigError, match="must not repeat observed state entries"):
        _config(aux_names=("j1", "hidden"))
    with pytest.raises(ConfigError, match="AuxiliaryConfig.weight"):
        AuxiliaryConfig(state_names=("a",), weight=-1.0)
    old = cfg.to_dict()
    del old["auxiliary"]  # configs written before the option load with no auxiliary head
    assert PolicyConfig.from_dict(old).auxiliary.state_names == ()


def test_loss_adds_the_weighted_auxiliary_term_and_needs_its_targets():
    batch = _batch()
    for weight in (1.0, 3.0):
        policy = GenerativePolicy.from_config(_config(weight=weight))
        policy.fit_normalizers(batch["action"], batch["obs"]["state"], batch["aux_state"])
        loss, info = policy.loss(batch, generator=torch.Generator().manual_seed(1))
        assert info["aux_loss"] > 0
        assert float(loss.detach()) == pytest.approx(info["action_loss"] + weight * info["aux_loss"], rel=1e-5)
    with pytest.raises(ValueError, match=r"batch\['aux_state'\] \[B, T_o, D_aux\] is required"):
        policy.loss({k: v for k, v in batch.items() if k != "aux_state"})
    with pytest.raises(ValueError, match=r"must be \[B, 2, 2\]"):
        policy.loss({**batch, "aux_state": batch["aux_state"][:, :1]})


def test_without_auxiliary_names_there_is_no_head_no_extra_tensors_and_no_extra_loss():
    plain = GenerativePolicy.from_config(_config(aux_names=()))
    assert plain.aux_head is None and not any(k.startswith("aux_") for k in plain.state_dict())
    _, info = plain.loss(_batch())
    assert "aux_loss" not in info and info["loss"] == info["action_loss"]
    with pytest.raises(ValueError, match="no auxiliary state"):
        plain.predict_aux_state(_batch()["obs"])


def test_auxiliary_loss_alone_trains_the_encoder_to_predict_the_hidden_state():
    torch.manual_seed(0)
    policy = GenerativePolicy.from_config(_config())
    train = _batch(B=256, seed=0)
    policy.fit_normalizers(train["action"], train["obs"]["state"], train["aux_state"])
    test = _batch(B=64, seed=1)
    before = (policy.predict_aux_state(test["obs"]) - test["aux_state"]).abs().mean()
    opt = torch.optim.Adam(list(policy.encoder.parameters()) + list(policy.aux_head.parameters()), lr=3e-3)
    enc_before = [p.detach().clone() for p in policy.encoder.parameters()]
    for _ in range(200):
        aux = policy.aux_head(policy.encode(train["obs"]))  # [B, T_o, 2] normalised
        aux_loss = torch.nn.functional.mse_loss(aux, policy.aux_normalizer.normalize(train["aux_state"]))
        opt.zero_grad()
        aux_loss.backward()
        opt.step()
    after = (policy.predict_aux_state(test["obs"]) - test["aux_state"]).abs().mean()
    assert after < 0.2 * before, f"auxiliary prediction error {before:.3f} -> {after:.3f}"
    moved = max((p - q).abs().max().item() for p, q in zip(policy.encoder.parameters(), enc_before))
    assert moved > 1e-3, "the auxiliary loss did not reach the encoder"


def test_an_image_only_head_reads_the_camera_features_and_leaves_the_joints_untaught():
    def config(from_images, cameras=("top",)):
        return PolicyConfig(
            kind="flow",
            action=ActionSpec(["j0", "j1"], [-3.0, -3.0], [3.0, 3.0]),
            observation=ObservationSpec(["j0", "j1"], camera_names=cameras, image_size=(16, 16)),
            horizon=HorizonConfig(T_o=T_O, T_p=T_P, T_a=4),
            network=NetworkConfig("unet1d", {"down_dims": [16, 32], "time_embed_dim": 16}),
            encoder=EncoderConfig({"proprio_feature_dim": 16, "proprio_hidden": [32], "image_feature_dim": 8,
                                   "vision_width": 4, "num_keypoints": 4, "vision_backbone": "keypoint_cnn"}),
            auxiliary=AuxiliaryConfig(state_names=("hidden_x", "hidden_y"), from_images=from_images),
            cond_dropout=0.0,
        )

    with pytest.raises(ConfigError, match="auxiliary.from_images"):
        config(True, cameras=())
    batch = _batch(B=4)
    batch["obs"]["images"] = {"top": torch.rand(4, T_O, 3, 16, 16)}
    for from_images, in_features in ((False, 16 + 8), (True, 8)):
        policy = GenerativePolicy.from_config(config(from_images))
        assert policy.aux_head.in_features == in_features
        policy.fit_normalizers(batch["action"], batch["obs"]["state"], batch["aux_state"])
        aux = policy.aux_head(policy.encode(batch["obs"])[..., policy._aux_from:])  # [B, T_o, 2]
        aux.square().sum().backward()
        proprio_grad = sum(float(p.grad.abs().sum()) for p in policy.encoder.proprio.parameters() if p.grad is not None)
        assert (proprio_grad == 0.0) == from_images  # the image-only head teaches the camera encoder alone
        assert policy.predict_aux_state(batch["obs"]).shape == (4, T_O, 2)
