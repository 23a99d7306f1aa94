"""What the policy node hears: joint states, the model's non-joint inputs, camera frames.

One managed entity (`ObservationInputs`, enabled between activate and deactivate like a
lifecycle publisher) owns the subscriptions and turns each message into an engine
observation, or into a counted, logged rejection with a reason (reliability.md rows 3,
5, 6, 17). Nothing here raises on bad input.

Topics (relative names, remap as usual):

- ``joint_states`` (sensor_msgs/JointState): mapped **by name** onto the model's joint
  part of the state (every state entry that no input claims);
- one topic per non-joint input declared by the model (config.json
  ``observation.state_inputs``), named after the input: ``point`` inputs take
  geometry_msgs/PointStamped (x, y, z in order), ``pose`` inputs geometry_msgs/PoseStamped
  (x, y, z, qw, qx, qy, qz in order) — the first ``len(names)`` values;
- cameras: ``camera/image_raw`` (+ ``/compressed``) for a one-camera model, else
  ``camera/<name>/image_raw`` (+ ``/compressed``). Per camera the first transport that
  delivers is used; the other is ignored until the used one is silent for
  ``observation_timeout_s``. Frames of another size are fitted by ``image_resize``
  (runtime/images.py).

Unstamped messages (header stamp 0): rejected by default — latency compensation and the
time alignment of the history need the sensor's stamp. ``unstamped_inputs:=receive_time``
stamps them with the node's clock on arrival instead; the transport and driver delay is then
invisible, so actions are timed from when the message *arrived*, not when it was measured.
"""
from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

from rclpy.lifecycle.managed_entity import SimpleManagedEntity
from sensor_msgs.msg import CompressedImage, Image, JointState

from genpolicy_ros.runtime.images import fit_image
from genpolicy_ros.runtime.observation_buffer import AddStatus

from . import conversions as conv
from . import topics
from .input_messages import MESSAGE_TYPES, input_message_values
from .qos import sensor_qos

JOINT_STATES_TOPIC = topics.JOINT_STATES
camera_topics = topics.camera_topics
_WARN_THROTTLE_S = 2.0


@dataclass(frozen=True)
class InputSettings:
    """The parameters the input side reads on every message (swapped whole)."""

    unstamped_inputs: str = "reject"  # reject | receive_time
    image_resize: str = "resize"  # resolved: resize | center_crop_resize | reject


def stamp_advice(topic: str) -> str:
    return (f"stamp_zero: header stamp is 0 on {topic}: fill it in (the driver's clock, or "
            "`ros2 topic pub ... \"{header: {stamp: now}, ...}\"`), or set the parameter "
            "unstamped_inputs:=receive_time to stamp messages on arrival")


class ObservationInputs(SimpleManagedEntity):
    """The node's subscriptions; see the module docstring.

    Args:
        node: the lifecycle node (creates the subscriptions, gives clock and logger).
        engine: the :class:`~genpolicy_ros.runtime.engine.PolicyEngine` fed with observations.
        image_size: ``(H, W)`` the model's cameras expect.
        input_kinds: non-joint input name -> ``"point"`` | ``"pose"``.
        settings: callable returning the current :class:`InputSettings`.
        groups: ``(sensor, image)`` callback groups.
    """

    def __init__(self, node, engine, image_size: Tuple[int, int], input_kinds: Dict[str, str],
                 settings: Callable[[], InputSettings], groups) -> None:
        super().__init__()
        self._node = node
        self._engine = engine
        self._model = engine.model
        self._image_size = tuple(image_size)
        self._input_kinds = dict(input_kinds)
        self._settings = settings
        self._sensor_group, self._image_group = groups
        self.rejected: Counter = Counter()  # source -> count
        self.reasons: Counter = Counter()  # "source: status" -> count (stamp reasons and the like)
        self.last_rejected_reason = ""
        self.ignored_transport = 0
        self.last_state_arrival = -math.inf
        self.last_state_stamp: Optional[float] = None
        self._camera_transport: Dict[str, Optional[str]] = {c: None for c in self._model.camera_names}
        self._camera_arrival: Dict[Tuple[str, str], float] = {}

    # ------------------------------------------------------------------ set-up
    def create_subscriptions(self) -> List:
        node, qos = self._node, sensor_qos()
        subs = [node.create_subscription(JointState, JOINT_STATES_TOPIC, self._on_joint_state, qos,
                                         callback_group=self._sensor_group)]
        for name, kind in self._input_kinds.items():
            subs.append(node.create_subscription(
                MESSAGE_TYPES[kind], topics.input_topic(name),
                lambda msg, n=name, k=kind: self._on_input(n, k, msg), qos,
                callback_group=self._sensor_group))
        for camera, (raw, compressed) in camera_topics(self._model.camera_names).items():
            subs.append(node.create_subscription(
                Image, raw, lambda msg, c=camera: self._on_image(c, "raw", msg), qos,
                callback_group=self._image_group))
            subs.append(node.create_subscription(
                CompressedImage, compressed, lambda msg, c=camera: self._on_image(c, "compressed", msg), qos,
                callback_group=self._image_group))
        return subs

    # ------------------------------------------------------------------ helpers
    def _reject(self, source: str, reason: str, key: str = "") -> None:
        self.rejected[source] += 1
        if key:
            self.reasons[f"{source}: {key}"] += 1
        self.last_rejected_reason = f"{source}: {reason}"
        self._node.get_logger().warning(f"rejected {source} message: {reason}",
                                        throttle_duration_sec=_WARN_THROTTLE_S)

    def _stamp(self, header, source: str) -> Optional[float]:
        """Header stamp in seconds, the arrival time under ``receive_time``, or None (rejected)."""
        stamp = conv.stamp_to_seconds(header.stamp)
        if stamp > 0.0:
            return stamp
        if self._settings().unstamped_inputs == "receive_time":
            return self._node.get_clock().now().nanoseconds * 1e-9
        self._reject(source, stamp_advice(source), AddStatus.STAMP_ZERO.value)
        return None

    def _status(self, source: str, stamp: float, status: AddStatus) -> bool:
        """Log and count a refused observation; True when it was accepted."""
        if status.accepted:
            if status == AddStatus.RESET_BACKWARDS:
                self._node.get_logger().warning(
                    f"{source}: time went back to {stamp:.6f} s (confirmed): observation history and plan reset",
                    throttle_duration_sec=_WARN_THROTTLE_S)
            return True
        detail = {
            AddStatus.STAMP_BACKWARDS: "behind the newest stamp (stale or out of order): dropped; a time reset "
                                       "needs the node's clock to go back (/clock) or several consistent messages",
            AddStatus.OUT_OF_RANGE: "joint positions far outside the model's joint limits: implausible, dropped",
            AddStatus.STAMP_FUTURE: "stamp is in the future of the node's clock (clocks not synchronised?)",
        }.get(status)
        self._reject(source, f"stamp {stamp:.6f} s: {status.value}" + (f" ({detail})" if detail else ""),
                     status.value)
        return False

    # ------------------------------------------------------------------ callbacks
    def _on_joint_state(self, msg: JointState) -> None:
        arrival = time.monotonic()
        if not self.is_activated:
            return
        positions, reason = conv.joint_state_to_positions(msg, self._model.joint_state_names)  # [D_js]
        if positions is None:
            self._reject(JOINT_STATES_TOPIC, reason)
            return
        stamp = self._stamp(msg.header, JOINT_STATES_TOPIC)
        if stamp is None:
            return
        if self._status(JOINT_STATES_TOPIC, stamp, self._engine.observe_state(stamp, positions, arrival)):
            self.last_state_arrival = arrival
            self.last_state_stamp = stamp

    def _on_input(self, name: str, kind: str, msg) -> None:
        arrival = time.monotonic()
        if not self.is_activated:
            return
        values, reason = input_message_values(msg, kind, len(self._model.state_inputs[name]))  # [k]
        if values is None:
            self._reject(name, reason)
            return
        stamp = self._stamp(msg.header, name)
        if stamp is not None:
            self._status(name, stamp, self._engine.observe_input(name, stamp, values, arrival))

    def _on_image(self, camera: str, transport: str, msg) -> None:
        arrival = time.monotonic()
        if not self.is_activated:
            return
        # One transport per camera: the first that delivers *usable* frames; switch when it
        # has delivered none for observation_timeout_s (a raw topic of unsupported frames,
        # e.g. yuv422, must not starve a working compressed one).
        active = self._camera_transport.get(camera)
        if active is not None and active != transport:
            silent = arrival - self._camera_arrival.get((camera, active), -math.inf)
            if silent <= self._engine.settings.observation_timeout_s:
                self.ignored_transport += 1
                return
        source = f"camera/{camera}/{transport}"
        if transport == "raw":
            image, reason = conv.image_to_array(msg)  # [h, w, 3] uint8
        else:
            image, reason = conv.compressed_image_to_array(msg)  # [h, w, 3] uint8
        if image is not None:
            image, reason = fit_image(image, self._image_size, self._settings().image_resize)  # [H, W, 3]
        if image is None:
            self._reject(source, reason)
            return
        self._camera_transport[camera] = transport
        self._camera_arrival[(camera, transport)] = arrival
        stamp = self._stamp(msg.header, source)
        if stamp is not None:
            self._status(source, stamp, self._engine.observe_image(camera, stamp, image, arrival))
