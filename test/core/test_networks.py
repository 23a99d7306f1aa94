"""Behaviour of the networks: denoiser interface, conditioning, adaLN-Zero, vision encoder."""
import pytest
import torch

from genpolicy_ros.core.networks import (
    ConditionalUnet1D,
    DiTConfig,
    KeypointConvEncoder,
    ObsEncoderConfig,
    ObservationEncoder,
    ResNetEncoder,
    SpatialSoftmax,
    TransformerDenoiser,
    UNet1DConfig,
    VisionEncoderConfig,
    build_denoiser,
    build_vision_encoder,
    count_parameters,
    sinusoidal_embedding,
)

D_A, T_O, F = 3, 2, 6  # small action dim, obs history, token width used by most tests
SMALL_UNET = dict(down_dims=(16, 32, 64), time_embed_dim=16, n_groups=4)
SMALL_DIT = dict(d_model=32, n_layers=2, n_heads=4)


def small_unet(horizon=16):
    return build_denoiser("unet1d", action_dim=D_A, horizon=horizon, cond_dim=T_O * F, **SMALL_UNET)


def small_dit(horizon=16, cond_mode="cross_attention"):
    return build_denoiser(
        "dit", action_dim=D_A, horizon=horizon, cond_dim_per_token=F, n_obs_tokens=T_O, cond_mode=cond_mode, **SMALL_DIT
    )


def inputs(batch, horizon):
    sample = torch.randn(batch, horizon, D_A)  # [B, T_p, D_a]
    timestep = torch.rand(batch) * 100  # [B] float, as flow (t·100) or diffusion (k) pass it
    cond = torch.randn(batch, T_O, F)  # [B, T_o, F]
    return sample, timestep, cond


def randomize_zero_init(model):
    """Give zero-initialised (adaLN-Zero) weights random values, as if trained."""
    with torch.no_grad():
        for p in model.parameters():
            if torch.count_nonzero(p) == 0:
                p.normal_(0.0, 0.05)
    return model


def train_steps(model, n_steps, horizon=16, lr=1e-2):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sample, timestep, cond = inputs(4, horizon)
    target = torch.randn(4, horizon, D_A)
    for _ in range(n_steps):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(sample, timestep, cond), target)
        loss.backward()
        opt.step()
    return model


DENOISER_KINDS = ["unet1d", "dit_cross", "dit_in_context"]


def make(kind, horizon=16):
    if kind == "unet1d":
        return small_unet(horizon)
    return small_dit(horizon, "cross_attention" if kind == "dit_cross" else "in_context")


# ---------------------------------------------------------------- shapes / interface


@pytest.mark.parametrize("horizon", [4, 16, 24])
def test_unet_output_shape(horizon):
    net = small_unet(horizon)
    out = net(*inputs(2, horizon))
    assert out.shape == (2, horizon, D_A)


@pytest.mark.parametrize("cond_mode", ["cross_attention", "in_context"])
@pytest.mark.parametrize("horizon", [1, 10, 16])
def test_dit_output_shape(horizon, cond_mode):
    net = randomize_zero_init(small_dit(horizon, cond_mode))
    out = net(*inputs(2, horizon))
    assert out.shape == (2, horizon, D_A)
    assert torch.isfinite(out).all()


def test_unet_two_levels_accepts_horizon_divisible_by_two():
    net = build_denoiser("unet1d", action_dim=D_A, horizon=6, cond_dim=T_O * F, down_dims=(16, 32), n_groups=4)
    assert net(*inputs(2, 6)).shape == (2, 6, D_A)


@pytest.mark.parametrize("horizon", [10, 15, 2])
def test_unet_invalid_horizon_raises_clearly(horizon):
    with pytest.raises(ValueError, match=r"horizon=\d+ must be a positive multiple of 2\^\(len\(down_dims\)-1\) = 4"):
        UNet1DConfig(action_dim=D_A, horizon=horizon, cond_dim=4)


def test_denoisers_reject_wrong_cond_shape():
    sample, timestep, _ = inputs(2, 16)
    for kind in DENOISER_KINDS:
        with pytest.raises(ValueError, match="cond"):
            make(kind)(sample, timestep, torch.randn(2, T_O, F + 1))


def test_config_validation_messages():
    with pytest.raises(ValueError, match="divisible by n_heads"):
        DiTConfig(action_dim=2, horizon=4, cond_dim_per_token=3, n_obs_tokens=1, d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="cond_mode"):
        DiTConfig(action_dim=2, horizon=4, cond_dim_per_token=3, n_obs_tokens=1, cond_mode="film")
    with pytest.raises(ValueError, match="multiple of n_groups"):
        UNet1DConfig(action_dim=2, horizon=16, cond_dim=4, down_dims=(12, 24), n_groups=8)
    with pytest.raises(ValueError, match="unknown denoiser"):
        build_denoiser("lstm", action_dim=2)
    with pytest.raises(TypeError, match="UNet1DConfig"):
        build_denoiser("unet1d", action_dim=2, horizon=16, cond_dim=4, bogus=1)


def test_registry_accepts_json_style_config():
    # config.json gives lists, not tuples
    net = build_denoiser("unet1d", action_dim=D_A, horizon=16, cond_dim=T_O * F, down_dims=[16, 32], n_groups=4)
    assert isinstance(net, ConditionalUnet1D) and net.config.down_dims == (16, 32)
    assert isinstance(small_dit(), TransformerDenoiser)


# ---------------------------------------------------------------- conditioning


def test_timestep_embedding_distinguishes_fractional_times():
    emb = sinusoidal_embedding(torch.tensor([50.0, 50.5, 50.0]), 32)  # [3, 32]
    assert emb.shape == (3, 32)
    assert torch.equal(emb[0], emb[2])
    diff = (emb[0] - emb[1]).abs().max().item()
    assert diff > 1e-2, f"t=50 and t=50.5 embed almost equally (max diff {diff})"


@pytest.mark.parametrize("kind", DENOISER_KINDS)
def test_output_depends_on_timestep_and_cond(kind):
    net = make(kind)
    if kind != "unet1d":
        net = randomize_zero_init(net)
    sample, timestep, cond = inputs(2, 16)
    out = net(sample, timestep, cond)
    d_time = (net(sample, timestep + 7.5, cond) - out).abs().max().item()
    d_cond = (net(sample, timestep, cond + torch.randn_like(cond)) - out).abs().max().item()
    d_same = (net(sample, timestep, cond) - out).abs().max().item()
    assert d_same == 0.0
    assert d_time > 1e-4, f"{kind}: output ignores the timestep (max change {d_time:.2e})"
    assert d_cond > 1e-4, f"{kind}: output ignores the observation cond (max change {d_cond:.2e})"


@pytest.mark.parametrize("cond_mode", ["cross_attention", "in_context"])
def test_dit_adaln_zero_blocks_are_identity_at_init(cond_mode):
    net = small_dit(cond_mode=cond_mode)
    sample, timestep, cond = inputs(3, 16)
    x = torch.randn(3, 16 + (T_O if cond_mode == "in_context" else 0), SMALL_DIT["d_model"])  # tokens
    c = torch.randn(3, SMALL_DIT["d_model"])  # conditioning vector
    obs = torch.randn(3, T_O, SMALL_DIT["d_model"])  # projected obs tokens
    for i, block in enumerate(net.blocks):
        y = block(x, c, obs if cond_mode == "cross_attention" else None)
        assert torch.equal(y, x), f"block {i} is not the identity at init"
    out = net(sample, timestep, cond)
    assert torch.count_nonzero(out) == 0, "zero-initialised head must output exactly 0 at init"


@pytest.mark.parametrize("cond_mode", ["cross_attention", "in_context"])
def test_dit_learns_to_use_timestep_and_cond_after_training_steps(cond_mode):
    # Step 1 only moves the zero head (every other gradient passes through it), so the
    # output still ignores t and cond; step 2 opens the block gates and the final adaLN.
    net = small_dit(cond_mode=cond_mode)
    sample, timestep, cond = inputs(2, 16)

    def sensitivity():
        out = net(sample, timestep, cond)
        d_time = (net(sample, timestep + 7.5, cond) - out).abs().max().item()
        d_cond = (net(sample, timestep, cond + torch.randn_like(cond)) - out).abs().max().item()
        return d_time, d_cond

    train_steps(net, n_steps=1)
    assert sensitivity() == (0.0, 0.0), "after one step every block must still be the identity"
    train_steps(net, n_steps=1)
    d_time, _ = sensitivity()
    # silence the pooled-obs path: cond must still reach the actions through attention
    with torch.no_grad():
        net.obs_pool.weight.zero_()
        net.obs_pool.bias.zero_()
    _, d_cond = sensitivity()
    assert d_time > 1e-5, f"{cond_mode}: after 2 steps output ignores the timestep ({d_time:.2e})"
    assert d_cond > 1e-5, f"{cond_mode}: after 2 steps cond does not reach the output via attention ({d_cond:.2e})"


@pytest.mark.parametrize("kind", DENOISER_KINDS)
def test_gradients_reach_all_parameters(kind):
    net = make(kind)
    if kind != "unet1d":
        train_steps(net, n_steps=2)  # open the adaLN-Zero gates first (see test above)
    sample, timestep, cond = inputs(4, 16)
    net.zero_grad()
    net(sample, timestep, cond).square().mean().backward()
    dead = [n for n, p in net.named_parameters() if p.grad is None or torch.count_nonzero(p.grad) == 0]
    assert not dead, f"{kind}: no gradient reaches {dead}"


def test_default_parameter_counts():
    # T_o = 2 steps of a small 32-wide token (e.g. low-dim state features)
    unet = build_denoiser("unet1d", action_dim=7, horizon=16, cond_dim=2 * 32)
    dit_x = build_denoiser("dit", action_dim=7, horizon=16, cond_dim_per_token=32, n_obs_tokens=2)
    dit_c = build_denoiser("dit", action_dim=7, horizon=16, cond_dim_per_token=32, n_obs_tokens=2,
                           cond_mode="in_context")
    vision = ResNetEncoder(VisionEncoderConfig())
    counts = {
        "unet1d(64,128,256)": count_parameters(unet),
        "dit cross_attention": count_parameters(dit_x),
        "dit in_context": count_parameters(dit_c),
        "resnet width 32": count_parameters(vision),
    }
    msg = ", ".join(f"{k}: {v / 1e6:.2f} M" for k, v in counts.items())
    assert 1e6 <= counts["unet1d(64,128,256)"] <= 5e6, msg
    assert 0.3e6 <= counts["dit in_context"] < counts["dit cross_attention"] <= 5e6, msg
    assert 1e6 <= counts["resnet width 32"] <= 5e6, msg


@pytest.mark.parametrize("kind", DENOISER_KINDS)
def test_batch_independence(kind):
    net = make(kind).eval()
    if kind != "unet1d":
        net = randomize_zero_init(net)
    sample, timestep, cond = inputs(4, 16)
    out = net(sample, timestep, cond)
    for j in (0, 3):  # perturb one sample's inputs; the others must not move
        sample2, timestep2, cond2 = sample.clone(), timestep.clone(), cond.clone()
        sample2[j] += 1.0
        timestep2[j] += 10.0
        cond2[j] += 1.0
        out2 = net(sample2, timestep2, cond2)
        others = [i for i in range(4) if i != j]
        moved_others = (out2[others] - out[others]).abs().max().item()
        moved_j = (out2[j] - out[j]).abs().max().item()
        assert moved_others < 1e-5, f"{kind}: changing sample {j} changed the others by {moved_others:.2e}"
        assert moved_j > 1e-4, f"{kind}: changing sample {j}'s inputs did not change its output ({moved_j:.2e})"


# ---------------------------------------------------------------- vision / observation encoder


def tiny_obs_config(**kw):
    base = dict(
        state_dim=5, T_o=T_O, camera_names=("front", "wrist"), image_size=(32, 32),
        proprio_feature_dim=8, image_feature_dim=4, vision_width=8, num_keypoints=4,
    )
    base.update(kw)
    return ObsEncoderConfig(**base)


def obs_batch(batch=2, cameras=("front", "wrist"), size=(32, 32)):
    return {
        "state": torch.randn(batch, T_O, 5),  # [B, T_o, D_s]
        "images": {n: torch.rand(batch, T_O, 3, *size) for n in cameras},  # [B, T_o, 3, H, W]
    }


@pytest.mark.parametrize("shared", [False, True])
def test_obs_encoder_two_cameras(shared):
    enc = ObservationEncoder(tiny_obs_config(share_camera_encoder=shared))
    tokens = enc(obs_batch())
    assert enc.token_dim == 8 + 2 * 4
    assert tokens.shape == (2, T_O, enc.token_dim)
    n_vision = sum(1 for m in enc.modules() if isinstance(m, ResNetEncoder))
    assert n_vision == (1 if shared else 2)
    # each camera owns its slot of the token: changing the wrist image moves only that slot
    obs = obs_batch()
    base = enc(obs)
    obs["images"]["wrist"] = torch.rand_like(obs["images"]["wrist"])
    moved = (enc(obs) - base).abs().amax(dim=(0, 1))  # [F]
    assert moved[:12].max() == 0 and moved[12:].max() > 0, moved


def test_obs_encoder_without_cameras_is_proprio_only():
    enc = ObservationEncoder(tiny_obs_config(camera_names=()))
    assert enc.token_dim == 8
    assert not any(isinstance(m, ResNetEncoder) for m in enc.modules())
    assert enc({"state": torch.randn(3, T_O, 5)}).shape == (3, T_O, 8)


def test_obs_encoder_names_missing_and_extra_cameras():
    enc = ObservationEncoder(tiny_obs_config())
    obs = obs_batch(cameras=("front", "side"))
    with pytest.raises(KeyError, match=r"missing \['wrist'\], unexpected \['side'\]"):
        enc(obs)
    with pytest.raises(KeyError, match="wrist"):
        enc({"state": torch.randn(2, T_O, 5)})


def test_obs_encoder_rejects_wrong_image_size_clearly():
    enc = ObservationEncoder(tiny_obs_config())
    with pytest.raises(ValueError, match=r"images\['front'\].*\(32, 32\).*got \(2, 2, 3, 48, 32\)"):
        enc(obs_batch(size=(48, 32)))
    with pytest.raises(ValueError, match=r"image_size=\(64, 64\)"):
        ResNetEncoder(VisionEncoderConfig(image_size=(64, 64), width=8))(torch.rand(1, 3, 96, 96))
    with pytest.raises(ValueError, match="smaller than the encoder's total stride"):
        VisionEncoderConfig(image_size=(8, 8))


def test_spatial_softmax_keypoints_follow_a_bright_spot():
    ss = SpatialSoftmax(8, 8)
    noise = torch.randn(5, 3, 8, 8) * 50  # extreme logits still give coordinates in [-1, 1]
    kp = ss(noise)  # [5, 3, 2]
    assert kp.shape == (5, 3, 2) and kp.abs().max() <= 1.0

    def spot(row, col):
        fmap = torch.zeros(1, 1, 8, 8)
        fmap[0, 0, row, col] = 20.0
        return ss(fmap)[0, 0]  # (x, y)

    left, right, low = spot(4, 1), spot(4, 6), spot(7, 1)
    assert right[0] - left[0] > 1.0, f"x did not follow the spot: {left.tolist()} -> {right.tolist()}"
    assert abs(right[1] - left[1]) < 1e-5
    assert low[1] - left[1] > 0.5, f"y did not follow the spot: {left.tolist()} -> {low.tolist()}"
    assert torch.allclose(spot(0, 0), torch.tensor([-1.0, -1.0]), atol=1e-4)


def test_vision_encoder_keypoints_in_range_and_move_with_image_spot():
    enc = ResNetEncoder(VisionEncoderConfig(image_size=(64, 64), width=8, num_keypoints=8, feature_dim=16))
    images = torch.zeros(2, 3, 64, 64)  # dark images, one bright square each
    images[0, :, 8:16, 8:16] = 1.0
    images[1, :, 44:52, 44:52] = 1.0
    kp = enc.keypoints(images)  # [2, 8, 2]
    assert kp.shape == (2, 8, 2)
    assert kp.abs().max() <= 1.0, kp.abs().max()
    moved = (kp[0] - kp[1]).abs().max().item()
    assert moved > 1e-3, f"keypoints did not move when the bright spot moved ({moved:.2e})"
    assert enc(images).shape == (2, 16)


def test_gradients_reach_encoders_through_denoiser():
    enc = ObservationEncoder(tiny_obs_config())
    net = build_denoiser("unet1d", action_dim=D_A, horizon=16, cond_dim=T_O * enc.token_dim, **SMALL_UNET)
    tokens = enc(obs_batch())  # [2, T_o, F]
    sample = torch.randn(2, 16, D_A)
    net(sample, torch.rand(2) * 100, tokens).square().mean().backward()
    dead = [n for n, p in enc.named_parameters() if p.grad is None or torch.count_nonzero(p.grad) == 0]
    assert not dead, f"no gradient reaches encoder parameters {dead}"


def test_keypoint_cnn_pools_on_a_half_resolution_map_and_tracks_a_spot_finer_than_resnet_cells():
    cfg = VisionEncoderConfig(image_size=(32, 32), width=8, num_keypoints=4, feature_dim=16, backbone="keypoint_cnn")
    assert cfg.feature_map_size == (16, 16) and cfg.total_stride == 2
    assert VisionEncoderConfig(image_size=(64, 64)).feature_map_size == (4, 4)  # the ResNet's map
    enc = build_vision_encoder(cfg)
    assert isinstance(enc, KeypointConvEncoder)
    # Train keypoint 0 briefly to report a dot's x, then check it resolves 2-pixel moves
    # (a quarter of the cell of a ResNet at this image size).
    torch.manual_seed(0)
    opt = torch.optim.Adam(enc.parameters(), lr=3e-3)

    def spots(cols):
        images = torch.zeros(len(cols), 3, 32, 32)
        for i, c in enumerate(cols):
            images[i, 0, 15:18, c:c + 3] = 1.0  # a 3x3 red dot, as the sim's target
        return images

    for _ in range(80):
        cols = torch.randint(2, 28, (8,))
        x_true = (cols.float() + 1.0) / 31.0 * 2.0 - 1.0  # dot centre in [-1, 1]
        loss = (enc.keypoints(spots(cols.tolist()))[:, 0, 0] - x_true).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        xs = enc.keypoints(spots([9, 11, 13, 15, 17]))[:, 0, 0]  # [5]
    assert torch.all(xs.diff() > 0.04), f"keypoint did not follow 2-pixel moves of the dot: {xs.tolist()}"
    assert enc(spots([10])).shape == (1, 16)


def test_keypoint_cnn_stem_stride_sets_its_keypoint_grid():
    # Default 2 (the shipped reach models); 4 pools on a quarter of the cells (models/aloha_image_flow).
    assert VisionEncoderConfig(image_size=(96, 128), backbone="keypoint_cnn").feature_map_size == (48, 64)
    cfg = VisionEncoderConfig(image_size=(96, 128), width=8, num_keypoints=4, feature_dim=16, stem_stride=4,
                              backbone="keypoint_cnn")
    assert cfg.feature_map_size == (24, 32) and cfg.total_stride == 4
    enc = build_vision_encoder(cfg)
    images = torch.zeros(2, 3, 96, 128)
    images[0, 0, 10:13, 10:13] = 1.0
    images[1, 0, 80:83, 110:113] = 1.0
    assert enc(images).shape == (2, 16) and enc.keypoints(images).abs().max() <= 1.0


def test_unknown_vision_backbone_is_refused():
    with pytest.raises(ValueError, match="backbone must be one of"):
        VisionEncoderConfig(backbone="vgg")
    with pytest.raises(ValueError, match="backbone must be one of"):
        ObsEncoderConfig(state_dim=2, T_o=1, camera_names=("cam",), vision_backbone="vgg")
