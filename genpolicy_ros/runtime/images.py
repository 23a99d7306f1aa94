"""Bringing a camera frame to the model's input size — the same function at training-data
conversion and at run time, so both see the same pixels (issue 9 §5).

Modes (``observation.image_preprocess`` in a model's config.json records the one its
training data went through; the node's ``image_resize`` parameter picks one at run time,
``auto`` = the model's):

* ``resize`` — the whole frame scaled to (H, W); the aspect ratio changes when the
  camera's differs from the model's (a 640×480 frame into 64×64 squeezes x by 4/3).
* ``center_crop_resize`` — the largest centred region with the model's aspect ratio, then
  scaled (Diffusion Policy crops, then resizes): no distortion, the borders are lost.
* ``reject`` — a frame of any other size is refused with a reason (never converted).

Shrinking uses area interpolation (no aliasing), enlarging bilinear. Frames already at the
model's size pass through untouched in every mode.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

IMAGE_FITS = ("resize", "center_crop_resize", "reject")


def center_crop_box(height: int, width: int, size: Tuple[int, int]) -> Tuple[int, int, int, int]:
    """``(top, left, h, w)`` of the largest centred box of ``height × width`` with the aspect
    ratio of ``size = (H, W)``."""
    target_h, target_w = size
    if width * target_h > height * target_w:  # frame wider than the model's aspect: crop x
        h, w = height, max(1, int(round(height * target_w / target_h)))
    else:
        h, w = max(1, int(round(width * target_h / target_w))), width
    return (height - h) // 2, (width - w) // 2, h, w


def fit_image(image: np.ndarray, size: Tuple[int, int], mode: str) -> Tuple[Optional[np.ndarray], str]:
    """``uint8 [h, w, 3]`` -> ``(uint8 [H, W, 3], "")`` or ``(None, reason)``; see the module docstring."""
    if mode not in IMAGE_FITS:
        raise ValueError(f"image fit mode must be one of {IMAGE_FITS}, got {mode!r}")
    target = (int(size[0]), int(size[1]))
    height, width = int(image.shape[0]), int(image.shape[1])
    if (height, width) == target:
        return image, ""
    if mode == "reject":
        return None, (f"image is {height}x{width} (HxW) but the model expects {target[0]}x{target[1]} "
                      "(parameter image_resize: resize or center_crop_resize converts it)")
    import cv2

    if mode == "center_crop_resize":
        top, left, h, w = center_crop_box(height, width, target)
        image = image[top:top + h, left:left + w]  # [h', w', 3] view
    shrinking = image.shape[0] * image.shape[1] > target[0] * target[1]
    out = cv2.resize(np.ascontiguousarray(image), (target[1], target[0]),
                     interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)  # [H, W, 3]
    return out, ""
