"""MinMaxNormalizer: [-1, 1] range, exact round trip, constant dims, state-dict travel."""
import pytest
import torch

from genpolicy_ros.core.normalizer import MinMaxNormalizer


def _data():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(200, 5, 3, generator=g) * torch.tensor([0.1, 3.0, 50.0]) + torch.tensor([2.0, -1.0, 7.0])
    return x  # [N, T, D]


def test_fit_maps_data_onto_minus_one_one():
    x = _data()
    norm = MinMaxNormalizer(3).fit(x)
    y = norm.normalize(x)
    flat = y.reshape(-1, 3)
    assert torch.allclose(flat.min(0).values, -torch.ones(3), atol=1e-6), flat.min(0).values
    assert torch.allclose(flat.max(0).values, torch.ones(3), atol=1e-6), flat.max(0).values


def test_round_trip():
    x = _data()
    norm = MinMaxNormalizer(3).fit(x)
    back = norm.unnormalize(norm.normalize(x))
    err = (back - x).abs().max().item()
    assert err < 1e-4, f"round-trip max error {err}"


def test_unfitted_is_identity():
    x = _data()
    norm = MinMaxNormalizer(3)
    assert torch.equal(norm.normalize(x), x)


def test_constant_dims_map_to_zero_and_back_exactly():
    x = _data()
    x[..., 1] = 0.123456789  # constant
    x[..., 2] = 4.0 + 1e-6 * torch.rand(x.shape[:-1])  # range below eps 1e-4: treated as constant
    norm = MinMaxNormalizer(3).fit(x)
    y = norm.normalize(x)
    assert torch.equal(y[..., 1], torch.zeros_like(y[..., 1])), y[..., 1].abs().max()
    assert y[..., 2].abs().max() < 1e-5, y[..., 2].abs().max()
    back = norm.unnormalize(y)
    assert torch.equal(back[..., 1], x[..., 1])
    assert torch.isfinite(y).all()


def test_state_dict_travel():
    x = _data()
    a = MinMaxNormalizer(3).fit(x)
    sd = a.state_dict()
    assert set(sd) == {"min", "max"}, set(sd)
    b = MinMaxNormalizer(3)
    assert not torch.equal(b.normalize(x), a.normalize(x))
    b.load_state_dict(sd)
    assert torch.equal(b.normalize(x), a.normalize(x))


def test_rejects_non_finite_and_bad_shapes():
    x = _data()
    x[3, 2, 1] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        MinMaxNormalizer(3).fit(x)
    with pytest.raises(ValueError, match="non-finite"):
        MinMaxNormalizer(2).set_stats([0.0, float("inf")], [1.0, 2.0])
    with pytest.raises(ValueError, match="min > max"):
        MinMaxNormalizer(2).set_stats([0.0, 3.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="last dim 3"):
        MinMaxNormalizer(3).normalize(torch.zeros(4, 2))
    bad = {"min": torch.tensor([0.0, float("nan")]), "max": torch.ones(2)}
    with pytest.raises(ValueError, match="non-finite"):
        MinMaxNormalizer(2).load_state_dict(bad)
