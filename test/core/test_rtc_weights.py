"""One RTC weight formula: the torch-free NumPy version (used by the real-time process)
equals the samplers' torch version."""
import numpy as np
import pytest
import torch

from genpolicy_ros.core.inpainting import rtc_prefix_weights
from genpolicy_ros.core.rtc_weights import rtc_prefix_weights_np


@pytest.mark.parametrize("schedule", ["exp", "linear"])
def test_numpy_and_torch_weights_agree(schedule):
    for horizon in (1, 4, 16, 50):
        for frozen in range(0, horizon + 1, max(1, horizon // 4)):
            for blend in range(0, horizon - frozen + 1, max(1, horizon // 5)):
                ours = rtc_prefix_weights_np(horizon, frozen, blend, schedule)
                ref = rtc_prefix_weights(horizon, frozen, blend, schedule)
                assert isinstance(ref, torch.Tensor)
                np.testing.assert_allclose(ours, ref.double().numpy(), atol=1e-7)


def test_weights_shape_of_the_paper():
    w = rtc_prefix_weights_np(10, 3, 4)
    assert (w[:3] == 1).all() and (w[7:] == 0).all()
    assert (np.diff(w[3:7]) < 0).all() and 0 < w[6] < w[3] < 1
    with pytest.raises(ValueError, match="exceeds horizon"):
        rtc_prefix_weights_np(4, 3, 2)
