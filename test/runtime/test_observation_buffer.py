"""ObservationBuffer: stamp alignment, latest-before resampling, staleness, resets, rejection."""
import threading

import numpy as np
import pytest

from genpolicy_ros.runtime.observation_buffer import AddStatus, ObservationBuffer, SnapshotStatus


def make(T_o=3, dt=0.1, max_age=0.5, **kw):
    return ObservationBuffer(T_o=T_o, dt=dt, stream_names=["state", "camera/front"], max_age_s=max_age, **kw)


def vec(stamp):
    return np.full(2, stamp, dtype=np.float64)


def test_validation_errors_are_clear():
    with pytest.raises(ValueError, match="T_o"):
        ObservationBuffer(T_o=0, dt=0.1, stream_names=["s"], max_age_s=1.0)
    with pytest.raises(ValueError, match="stream_names"):
        ObservationBuffer(T_o=2, dt=0.1, stream_names=["s", "s"], max_age_s=1.0)
    with pytest.raises(ValueError, match="history_s"):
        ObservationBuffer(T_o=3, dt=0.1, stream_names=["s"], max_age_s=1.0, history_s=0.1)


def test_alignment_uses_header_stamps_and_latest_sample_at_or_before():
    buf = make(T_o=3, dt=0.1)
    # state at 100 Hz arrives promptly; camera frames arrive 0.3 s late (steady clock)
    for i in range(80, 106):
        st = i / 100
        assert buf.add("state", st, vec(st), arrival_time=10 + st) == AddStatus.ACCEPTED
    for st in (0.80, 0.87, 0.95, 1.02):
        assert buf.add("camera/front", st, vec(st), arrival_time=10.3 + st, now=1.05) == AddStatus.ACCEPTED
    snap = buf.snapshot(now=1.06, steady_now=11.33)
    assert snap is not None, buf.last_status
    assert snap.t == 1.02, "t = newest instant every stream has reached (camera's newest stamp)"
    np.testing.assert_allclose(snap.times, [0.82, 0.92, 1.02])
    # state: the samples stamped exactly at the instants (not the newest one, 1.05)
    np.testing.assert_allclose(snap.source_stamps["state"], [0.82, 0.92, 1.02])
    # camera: latest frame at or before each instant
    np.testing.assert_allclose(snap.source_stamps["camera/front"], [0.80, 0.87, 1.02])
    assert snap.data["camera/front"].shape == (3, 2)
    np.testing.assert_allclose(snap.data["camera/front"][:, 0], [0.80, 0.87, 1.02])
    np.testing.assert_allclose(snap.data["state"][:, 0], snap.source_stamps["state"])
    assert snap.padded == {"state": 0, "camera/front": 0}


def test_short_history_is_padded_with_the_oldest_sample_or_refused():
    buf = make(T_o=3, dt=0.1)
    buf.add("state", 1.0, vec(1.0), 1.0)
    buf.add("camera/front", 1.0, vec(1.0), 1.0)
    snap = buf.snapshot(1.0)
    assert snap.padded == {"state": 2, "camera/front": 2}
    np.testing.assert_allclose(snap.source_stamps["state"], [1.0, 1.0, 1.0])
    strict = make(T_o=3, dt=0.1, require_full_history=True)
    strict.add("state", 1.0, vec(1.0), 1.0)
    strict.add("camera/front", 1.0, vec(1.0), 1.0)
    assert strict.snapshot(1.0) is None
    assert strict.last_status[0] == SnapshotStatus.INSUFFICIENT_HISTORY


def test_missing_stream_gives_no_snapshot():
    buf = make()
    buf.add("state", 1.0, vec(1.0), 1.0)
    assert buf.snapshot(1.0) is None
    status, detail = buf.last_status
    assert status == SnapshotStatus.MISSING_STREAM and "camera/front" in detail


def test_stale_by_header_stamp():
    buf = make(max_age=0.5)
    buf.add("state", 1.0, vec(1.0), 1.0)
    buf.add("camera/front", 1.0, vec(1.0), 1.0)
    assert buf.snapshot(now=1.4) is not None
    assert buf.snapshot(now=1.6) is None
    assert buf.last_status[0] == SnapshotStatus.STALE_STAMP


def test_stale_by_steady_arrival_clock_when_stamp_clock_freezes():
    buf = make(max_age=0.5)
    buf.add("state", 1.0, vec(1.0), arrival_time=100.0, now=1.0)
    buf.add("camera/front", 1.0, vec(1.0), arrival_time=100.0, now=1.0)
    # /clock stopped: ROS time stays at 1.0 but nothing has arrived for 2 s of steady time
    assert buf.snapshot(now=1.0, steady_now=100.2) is not None
    assert buf.snapshot(now=1.0, steady_now=102.0) is None
    assert buf.last_status[0] == SnapshotStatus.STALE_ARRIVAL


def test_backwards_stamp_resets_all_streams_and_keeps_the_new_sample():
    buf = make()
    for st in (1.0, 1.1, 1.2):
        buf.add("state", st, vec(st), st)
        buf.add("camera/front", st, vec(st), st)
    assert buf.snapshot(1.2) is not None and buf.epoch == 0
    assert buf.add("state", 0.05, vec(0.05), 1.3, now=0.05) == AddStatus.RESET_BACKWARDS
    assert buf.epoch == 1 and buf.stats()["resets"] == 1
    assert buf.stats()["samples"] == {"state": 1, "camera/front": 0}
    assert buf.snapshot(0.06) is None, "camera history from the old timeline must be gone"
    buf.add("camera/front", 0.06, vec(0.06), 1.31, now=0.06)
    assert buf.snapshot(0.07, steady_now=1.32) is None  # t=0.05 but the camera starts at 0.06
    assert buf.last_status[0] == SnapshotStatus.NO_SAMPLE_BEFORE
    buf.add("state", 0.07, vec(0.07), 1.32, now=0.07)
    snap = buf.snapshot(0.07, steady_now=1.32)
    assert snap is not None and snap.epoch == 1 and snap.t == 0.06
    assert (snap.source_stamps["camera/front"] == 0.06).all() and snap.padded["camera/front"] == 2
    np.testing.assert_allclose(snap.source_stamps["state"], [0.05, 0.05, 0.05])


def filled(stamps=(5000.0, 5000.1, 5000.2)):
    buf = make()
    for st in stamps:
        buf.add("state", st, vec(st), st, now=st)
        buf.add("camera/front", st, vec(st), st, now=st)
    return buf


def test_one_stale_message_is_dropped_not_a_reset():
    """Issue 9 §1: one JointState stamped an hour ago must not reset history or plan."""
    buf = filled()
    assert buf.add("state", 5000.2 - 3600.0, vec(0.0), 5000.25, now=5000.25) == AddStatus.STAMP_BACKWARDS
    assert buf.epoch == 0 and buf.stats()["add"]["stamp_backwards"] == 1
    snap = buf.snapshot(5000.25)
    assert snap is not None and snap.t == pytest.approx(5000.2), "history intact"


def test_a_sender_time_base_reset_is_confirmed_by_consecutive_messages():
    buf = filled()
    n = buf.reset_confirm_samples
    for k in range(n - 1):
        assert buf.add("state", 1.0 + 0.01 * k, vec(1.0), 5000.3, now=5000.3) == AddStatus.STAMP_BACKWARDS
    assert buf.epoch == 0
    assert buf.add("state", 1.0 + 0.01 * (n - 1), vec(1.0), 5000.3, now=5000.3) == AddStatus.RESET_BACKWARDS
    assert buf.epoch == 1 and buf.stats()["samples"] == {"state": n, "camera/front": 0}


def test_the_old_timeline_going_on_cancels_a_candidate_reset():
    buf = filled()
    n = buf.reset_confirm_samples
    t = 5000.2
    for k in range(3 * n):  # old messages interleaved with the live stream: never a reset
        t += 0.01
        buf.add("state", t, vec(t), t, now=t)
        assert buf.add("state", 1.0 + 0.01 * k, vec(1.0), t, now=t) == AddStatus.STAMP_BACKWARDS
    assert buf.epoch == 0


def test_slightly_behind_messages_never_start_a_reset():
    """After one stamp just ahead of the clock (within the future tolerance), the next normal
    messages are slightly behind it: dropped, never counted towards a reset."""
    buf = make(future_tolerance_s=0.05)
    buf.add("state", 10.0, vec(10.0), 10.0, now=10.0)
    assert buf.add("state", 10.04, vec(10.0), 10.0, now=10.0) == AddStatus.ACCEPTED
    for k in range(10):
        assert buf.add("state", 10.001 + 0.001 * k, vec(10.0), 10.0, now=10.0) == AddStatus.STAMP_BACKWARDS
    assert buf.epoch == 0


def test_a_clock_that_went_back_confirms_the_reset_at_once():
    buf = filled()
    assert buf.add("state", 1.0, vec(1.0), 5000.3, now=1.0) == AddStatus.RESET_BACKWARDS
    assert buf.epoch == 1


@pytest.mark.parametrize("stamp,status", [
    (0.0, AddStatus.STAMP_ZERO), (-1.0, AddStatus.STAMP_ZERO), (float("nan"), AddStatus.STAMP_NONFINITE),
    (float("inf"), AddStatus.STAMP_NONFINITE), ("abc", AddStatus.STAMP_NONFINITE), (None, AddStatus.STAMP_NONFINITE),
    (5.0, AddStatus.STAMP_FUTURE),
])
def test_bad_stamps_are_rejected_with_a_reason(stamp, status):
    buf = make()
    assert buf.add("state", stamp, vec(1.0), arrival_time=1.0, now=1.0) == status
    assert buf.stats()["add"][status.value] == 1 and buf.stats()["samples"]["state"] == 0


def test_future_tolerance_and_other_rejections():
    buf = make(future_tolerance_s=0.05)
    assert buf.add("state", 1.04, vec(1.0), arrival_time=1.0) == AddStatus.ACCEPTED  # within tolerance
    assert buf.add("state", 1.04, vec(1.0), arrival_time=1.0) == AddStatus.DUPLICATE_STAMP
    assert buf.add("lidar", 1.0, vec(1.0), 1.0) == AddStatus.UNKNOWN_STREAM
    assert buf.add("state", 1.05, np.array([np.nan, 0.0]), 1.05) == AddStatus.BAD_VALUE
    assert buf.add("state", 1.05, np.zeros(3), 1.05) == AddStatus.BAD_VALUE  # shape changed
    assert buf.add("state", 1.05, object(), 1.05) == AddStatus.BAD_VALUE
    assert buf.add("state", 1.05, vec(1.05), float("nan")) == AddStatus.BAD_ARRIVAL_TIME
    assert buf.stats()["samples"]["state"] == 1


def test_burst_of_random_malformed_samples_never_raises_and_stays_bounded():
    rng = np.random.default_rng(7)
    buf = make(T_o=2, dt=0.1, max_age=0.5, max_samples=20)
    junk = [None, "abc", object(), [1, [2, 3]], np.array([]), np.array(["a", "b"]), {"x": 1},
            np.array([np.inf, 1.0]), 1e308, -5, float("nan")]
    seen = set()
    for i in range(10_000):
        stream = ["state", "camera/front", "nope", None, 3][int(rng.integers(0, 5))]
        stamp = [float(rng.uniform(-1, 3)), 0.0, float("nan"), None, "x", i * 1e-4 + 0.1][int(rng.integers(0, 6))]
        value = junk[int(rng.integers(0, len(junk)))] if rng.random() < 0.5 else vec(float(rng.random()))
        status = buf.add(stream, stamp, value, arrival_time=float(rng.uniform(0, 2)), now=1.0)
        assert isinstance(status, AddStatus)
        seen.add(status)
        snap = buf.snapshot(now=1.0, steady_now=1.0)
        if snap is not None:
            assert all(np.isfinite(d).all() for d in snap.data.values())
    assert max(buf.stats()["samples"].values()) <= 20
    assert {AddStatus.ACCEPTED, AddStatus.BAD_VALUE, AddStatus.UNKNOWN_STREAM, AddStatus.STAMP_ZERO,
            AddStatus.STAMP_NONFINITE, AddStatus.STAMP_FUTURE, AddStatus.RESET_BACKWARDS} <= seen, seen


def test_memory_stays_bounded_under_a_flood():
    buf = make(T_o=2, dt=0.1, max_age=0.5, max_samples=50)
    for i in range(1, 5001):
        buf.add("state", i * 1e-4, vec(0.0), i * 1e-4)
    n = buf.stats()["samples"]["state"]
    assert n <= 50, f"{n} samples kept"


def test_history_is_trimmed_by_time():
    buf = make(T_o=2, dt=0.1, max_age=0.2, history_s=0.5)
    for i in range(1, 301):
        buf.add("state", i * 0.01, vec(0.0), i * 0.01)
    n = buf.stats()["samples"]["state"]
    assert 50 <= n <= 52, f"history_s=0.5 at 100 Hz should keep ~51 samples, kept {n}"


def test_concurrent_writers_and_reader_see_consistent_snapshots():
    buf = ObservationBuffer(T_o=4, dt=0.01, stream_names=["state", "camera/front"], max_age_s=10.0)
    n = 1500
    errors = []
    snaps = []

    def writer(stream, offset):
        try:
            for i in range(1, n + 1):
                st = i * 0.001 + offset
                assert buf.add(stream, st, vec(st), arrival_time=st, now=st).accepted
        except Exception as exc:  # pragma: no cover
            errors.append(exc)

    done = threading.Event()

    def reader():
        try:
            while not done.is_set() or not snaps:  # until the writers finish (and at least one snapshot)
                snap = buf.snapshot(now=2.0, steady_now=2.0)
                if snap is not None:
                    snaps.append(snap)
        except Exception as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=("state", 0.0)),
               threading.Thread(target=writer, args=("camera/front", 0.0003)), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads[:2]:
        t.join(60)
    done.set()
    threads[2].join(60)
    assert not errors, errors
    for snap in snaps:
        for name in ("state", "camera/front"):
            src = snap.source_stamps[name]
            np.testing.assert_allclose(snap.data[name][:, 0], src)  # value matches its stamp
            pad = snap.padded[name]  # leading instants before the stream's first sample hold that sample
            assert (np.diff(src) >= 0).all() and (src[pad:] <= snap.times[pad:] + 1e-9).all()
    final = buf.snapshot(now=2.0, steady_now=2.0)
    assert final.t == pytest.approx(n * 0.001), f"t should be the newest common stamp, got {final.t}"
    assert len(snaps) > 0, "reader never got a snapshot"
