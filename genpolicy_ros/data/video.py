"""MP4 video in and out through PyAV (FFmpeg's libraries): what LeRobotDataset stores.

- :func:`decode_frames_at` — RGB frames of one video file at given presentation times
  (seconds), one pass over the file; each request takes the frame whose timestamp is
  nearest, and a request with no frame within ``tolerance_s`` is an error naming the
  file and the time.
- :class:`VideoEncoder` — append RGB frames to an MP4 (H.264 by default, constant frame
  rate: frame ``k`` is shown at ``k / fps`` s), as LeRobot's writer does.

Decoding works for whatever codecs the installed FFmpeg has (LeRobot writes AV1 by
default, H.264 on request); a file FFmpeg cannot open is a :class:`VideoError`.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np


class VideoError(ValueError):
    """A video file that cannot be read or written as asked (message names the file)."""


def _av():
    try:
        import av
    except ImportError:  # pragma: no cover - av is in the data extra
        raise VideoError("PyAV is not installed (pip install av, or the package's 'data' extra)") from None
    return av


def resize_rgb(frame: np.ndarray, size: Optional[Tuple[int, int]], fit: str = "resize") -> np.ndarray:
    """``frame`` [H, W, 3] uint8 → [h, w, 3] (``size`` = (h, w)) by ``fit`` — ``resize`` or
    ``center_crop_resize`` — the same function the policy node applies to camera frames
    (runtime/images.py), so a model sees at run time the pixels it was trained on."""
    if size is None or tuple(frame.shape[:2]) == tuple(size):
        return frame
    from genpolicy_ros.runtime.images import fit_image

    return fit_image(frame, size, fit)[0]


def decode_frames_at(path, timestamps: Sequence[float], tolerance_s: float,
                     size: Optional[Tuple[int, int]] = None, fit: str = "resize") -> np.ndarray:
    """Frames of the first video stream of ``path`` at ``timestamps`` (s, any order).

    Returns ``[len(timestamps), H, W, 3]`` uint8 RGB (``size`` = (H, W) resizes; default
    the video's own size). Decodes from the last key frame before the earliest request to
    the latest request, once.
    """
    av = _av()
    path = Path(path)
    wanted = np.asarray(timestamps, dtype=np.float64)  # [N]
    if wanted.size == 0:
        raise VideoError(f"{path}: no timestamps requested")
    if not path.is_file():
        raise VideoError(f"{path}: video file missing")
    order = np.argsort(wanted, kind="stable")
    sorted_t = wanted[order]  # [N] ascending
    best_gap = np.full(wanted.shape, np.inf)  # [N] |frame time - request| of the pick so far
    picked: list = [None] * len(wanted)
    first_time, last_time = None, None
    try:
        container = av.open(str(path), "r")
    except Exception as exc:  # noqa: BLE001 - FFmpeg errors come in many classes
        raise VideoError(f"{path}: not a readable video ({exc})") from None
    try:
        if not container.streams.video:
            raise VideoError(f"{path}: holds no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        start = float(sorted_t[0]) - tolerance_s
        if start > 1.0 and stream.time_base is not None:
            container.seek(int(start / float(stream.time_base)), stream=stream, backward=True, any_frame=False)
        stop = float(sorted_t[-1]) + tolerance_s
        for frame in container.decode(stream):
            if frame.pts is None or frame.time is None:
                continue
            t = float(frame.time)
            first_time = t if first_time is None else min(first_time, t)
            last_time = t if last_time is None else max(last_time, t)
            lo = np.searchsorted(sorted_t, t - tolerance_s, side="left")
            hi = np.searchsorted(sorted_t, t + tolerance_s, side="right")
            if hi > lo:
                image = None
                for k in order[lo:hi]:
                    gap = abs(wanted[k] - t)
                    if gap < best_gap[k]:
                        if image is None:
                            image = resize_rgb(frame.to_ndarray(format="rgb24"), size, fit)  # [H, W, 3]
                        best_gap[k] = gap
                        picked[k] = image
            if t > stop:
                break
    except VideoError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise VideoError(f"{path}: decoding failed ({type(exc).__name__}: {exc})") from None
    finally:
        container.close()
    missing = [k for k in range(len(wanted)) if picked[k] is None]
    if missing:
        k = missing[0]
        span = "no frames" if first_time is None else f"decoded frames from {first_time:.4f} s to {last_time:.4f} s"
        raise VideoError(f"{path}: no frame within {tolerance_s * 1e3:.1f} ms of t = {wanted[k]:.4f} s "
                         f"({len(missing)} of {len(wanted)} requests unmatched; {span})")
    shapes = {p.shape for p in picked}
    if len(shapes) != 1:
        raise VideoError(f"{path}: frames change size within the video ({sorted(shapes)}); pass a size to resize")
    return np.stack(picked)  # [N, H, W, 3] uint8


def video_stream_info(path) -> dict:
    """LeRobot's ``info`` entry of a video feature, read from the file."""
    av = _av()
    with av.open(str(path), "r") as container:
        stream = container.streams.video[0]
        return {
            "video.height": int(stream.height),
            "video.width": int(stream.width),
            "video.codec": stream.codec_context.codec.canonical_name,
            "video.pix_fmt": stream.pix_fmt,
            "video.is_depth_map": False,
            "video.fps": int(round(float(stream.average_rate or stream.base_rate))),
            "video.channels": 3,
            "has_audio": bool(container.streams.audio),
        }


class VideoEncoder:
    """Append [H, W, 3] uint8 RGB frames to an MP4 at a constant ``fps``.

    ``codec`` ``libx264`` (H.264, default) or any FFmpeg encoder PyAV has; ``crf`` is the
    constant-rate quality (lower = better; 0 is lossless for x264); ``gop`` the key frame
    interval (small keeps seeking cheap, as LeRobot's default of 2). Pixel format
    ``yuv420p`` (what every player decodes) when H and W are even, else ``yuv444p``.
    Use as a context manager or call :meth:`close`.
    """

    def __init__(self, path, fps: int, height: int, width: int, codec: str = "libx264", crf: int = 18,
                 gop: int = 2):
        av = _av()
        if not (isinstance(fps, int) and fps > 0):
            raise VideoError(f"{path}: fps must be a positive integer, got {fps!r}")
        if height < 2 or width < 2:
            raise VideoError(f"{path}: frames must be at least 2x2, got {height}x{width}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.size = (int(height), int(width))
        self.frames = 0
        self._container = av.open(str(self.path), "w", format="mp4")
        try:
            self._stream = self._container.add_stream(codec, rate=Fraction(fps, 1))
        except Exception as exc:  # noqa: BLE001
            self._container.close()
            raise VideoError(f"{path}: FFmpeg encoder {codec!r} is unavailable ({exc})") from None
        self._stream.width, self._stream.height = self.size[1], self.size[0]
        self._stream.pix_fmt = "yuv420p" if height % 2 == 0 and width % 2 == 0 else "yuv444p"
        self._stream.options = {"crf": str(int(crf)), "g": str(int(gop))} if codec in ("libx264", "libx265") \
            else {"g": str(int(gop))}
        self._av = av

    def write(self, frames: np.ndarray) -> None:
        """``frames`` [N, H, W, 3] (or one [H, W, 3]) uint8 RGB, appended in order."""
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3 \
                or tuple(frames.shape[1:3]) != self.size:
            raise VideoError(f"{self.path}: frames must be [N, {self.size[0]}, {self.size[1]}, 3] uint8, "
                             f"got {frames.shape} {frames.dtype}")
        for image in frames:
            frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts = self.frames  # in the encoder's time base 1/fps: frame k at k/fps s
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
            self.frames += 1

    def close(self) -> None:
        if self._container is None:
            return
        try:
            for packet in self._stream.encode():
                self._container.mux(packet)
        finally:
            self._container.close()
            self._container = None

    def __enter__(self) -> "VideoEncoder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
