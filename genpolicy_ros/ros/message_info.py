"""Subscriptions that receive the middleware's ``MessageInfo`` where rclpy can pass it.

``MessageInfo`` (source and receive timestamps stamped by the DDS layer) reaches a
subscription callback with two parameters from rclpy of Iron on; Humble's rclpy has no
such callback form — there a two-parameter callback would only fail when called. So the
form is chosen by what the installed rclpy offers, and the callback gets ``info=None``
on Humble.
"""
from __future__ import annotations

from typing import Any, Callable, Optional


def message_info_supported() -> bool:
    """True when this rclpy passes ``MessageInfo`` to two-parameter callbacks."""
    import rclpy.subscription

    return hasattr(rclpy.subscription, "MessageInfo")


def subscribe_with_info(node, msg_type, topic: str, callback: Callable[[Any, Optional[dict]], None], qos) -> bool:
    """``node.create_subscription`` calling ``callback(msg, info)``; ``info`` is the
    MessageInfo dict (``source_timestamp``, ``received_timestamp`` in ns) or None where
    unsupported. Returns whether ``info`` will be given."""
    if message_info_supported():
        node.create_subscription(msg_type, topic, lambda msg, info: callback(msg, info), qos)
        return True
    node.create_subscription(msg_type, topic, lambda msg: callback(msg, None), qos)
    return False
