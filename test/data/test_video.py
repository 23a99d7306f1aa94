"""MP4 through PyAV: frames come back at their presentation times, misses are named errors."""
import numpy as np
import pytest

from genpolicy_ros.data.video import VideoEncoder, VideoError, decode_frames_at, video_stream_info


def _frames(n, h=32, w=48):
    grey = (np.arange(n) * 7) % 250  # [n] one grey level per frame
    return np.broadcast_to(grey[:, None, None, None], (n, h, w, 3)).astype(np.uint8).copy()  # [n, h, w, 3]


def test_encoded_frames_decode_at_their_timestamps_in_any_order(tmp_path):
    frames = _frames(40)
    path = tmp_path / "v.mp4"
    with VideoEncoder(path, fps=20, height=32, width=48) as enc:
        enc.write(frames[:25])
        enc.write(frames[25:])  # appending continues the timeline
    info = video_stream_info(path)
    assert (info["video.codec"], info["video.fps"], info["video.height"], info["video.width"]) == ("h264", 20, 32, 48)
    wanted = np.array([39, 0, 17, 17, 30])
    got = decode_frames_at(path, wanted / 20 + 0.01, tolerance_s=0.02)  # [5, 32, 48, 3], 10 ms late queries
    np.testing.assert_allclose(got.reshape(5, -1).mean(axis=1), frames[wanted, 0, 0, 0], atol=1.5)
    small = decode_frames_at(path, [0.5], tolerance_s=1e-4, size=(8, 12))
    assert small.shape == (1, 8, 12, 3)


def test_odd_sizes_encode_as_yuv444(tmp_path):
    path = tmp_path / "odd.mp4"
    with VideoEncoder(path, fps=10, height=15, width=21) as enc:
        enc.write(_frames(5, 15, 21))
    assert video_stream_info(path)["video.pix_fmt"] == "yuv444p"
    assert decode_frames_at(path, [0.4], 1e-3).shape == (1, 15, 21, 3)


def test_misses_and_bad_files_are_named_errors(tmp_path):
    path = tmp_path / "v.mp4"
    with VideoEncoder(path, fps=20, height=32, width=48) as enc:
        enc.write(_frames(10))
    with pytest.raises(VideoError, match=r"v.mp4: no frame within 10.0 ms of t = 0.5250 s"):
        decode_frames_at(path, [0.1, 0.525], tolerance_s=0.01)
    with pytest.raises(VideoError, match=r"missing.mp4: video file missing"):
        decode_frames_at(tmp_path / "missing.mp4", [0.0], 0.01)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(VideoError, match=r"junk.mp4: not a readable video"):
        decode_frames_at(junk, [0.0], 0.01)
    with VideoEncoder(tmp_path / "w.mp4", fps=20, height=32, width=48) as enc:
        with pytest.raises(VideoError, match=r"frames must be \[N, 32, 48, 3\] uint8"):
            enc.write(np.zeros((2, 16, 16, 3), np.uint8))
    with pytest.raises(VideoError, match="fps must be a positive integer"):
        VideoEncoder(tmp_path / "x.mp4", fps=0, height=32, width=48)
