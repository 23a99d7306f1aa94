"""Training-time frame fitting = run-time frame fitting (issue 9 §5): one function, recorded."""
import numpy as np
import pytest

from genpolicy_ros.data.episodes import DatasetMetadata, EpisodeFormatError
from genpolicy_ros.data.video import resize_rgb
from genpolicy_ros.runtime.images import center_crop_box, fit_image


def test_center_crop_box_keeps_the_target_aspect_ratio():
    assert center_crop_box(480, 640, (64, 64)) == (0, 80, 480, 480)
    assert center_crop_box(640, 480, (64, 64)) == (80, 0, 480, 480)
    assert center_crop_box(480, 640, (96, 128)) == (0, 0, 480, 640)


def test_modes_differ_as_documented_and_exact_sizes_pass_through():
    frame = np.zeros((48, 64, 3), np.uint8)  # [H, W, 3]: a red band on the left (cols 0-5), the rest blue
    frame[:, :6, 0] = 255
    frame[:, 6:, 2] = 255
    resized, _ = fit_image(frame, (32, 32), "resize")
    cropped, _ = fit_image(frame, (32, 32), "center_crop_resize")
    assert resized.shape == cropped.shape == (32, 32, 3)
    assert resized[:, 0, 0].min() > 200, "resize keeps the whole width: the red band is still there"
    assert cropped[:, 0, 0].max() < 50, "the centred square crop drops the red band"
    same, reason = fit_image(frame, (48, 64), "reject")
    assert same is frame and reason == ""
    refused, reason = fit_image(frame, (32, 32), "reject")
    assert refused is None and "image_resize" in reason
    with pytest.raises(ValueError):
        fit_image(frame, (32, 32), "stretch")


def test_data_conversion_uses_the_node_function():
    frame = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    for mode in ("resize", "center_crop_resize"):
        np.testing.assert_array_equal(resize_rgb(frame, (64, 64), mode), fit_image(frame, (64, 64), mode)[0])


def test_dataset_metadata_records_the_fit():
    meta = DatasetMetadata(joint_names=["a"], state_names=["a"], dt=0.1, cameras={"c": [8, 8]},
                           image_preprocess="center_crop_resize")
    assert DatasetMetadata(**meta.to_dict()).image_preprocess == "center_crop_resize"
    with pytest.raises(EpisodeFormatError, match="image_preprocess"):
        DatasetMetadata(joint_names=["a"], state_names=["a"], dt=0.1, image_preprocess="squash")
