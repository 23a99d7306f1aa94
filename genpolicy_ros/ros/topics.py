"""The topic and node names of the package, defined once (no rclpy import: plain strings).

Relative names (resolved in the node's namespace, remappable) are what nodes use; a bag
recorded at the root namespace holds them as absolute names (:func:`absolute`)::

    joint_states                                   sensor_msgs/JointState (robot -> policy)
    <input>                                        geometry_msgs/PointStamped | PoseStamped: a non-joint
                                                   state input, its topic = its name (e.g. target)
    camera/image_raw (+ /compressed)               one camera; several: camera/<name>/image_raw (+ /compressed)
    joint_trajectory_controller/joint_trajectory   trajectory_msgs/JointTrajectory (policy -> robot)
    forward_position_controller/commands           std_msgs/Float64MultiArray (policy -> robot)
    ~/action_chunk                                 the policy node's merged chunks (debugging)
    /diagnostics, /clock                           absolute
    /genpolicy_sim/episode                         the sim node's episode outcomes (JSON)
"""
from __future__ import annotations

from typing import Dict, Sequence, Tuple

POLICY_NODE = "genpolicy"
SIM_NODE = "genpolicy_sim"

JOINT_STATES = "joint_states"
TRAJECTORY = "joint_trajectory_controller/joint_trajectory"
FORWARD = "forward_position_controller/commands"
ACTION_CHUNK = "~/action_chunk"
EPISODE = "~/episode"  # the sim node's private topic
RESET_SERVICE = "~/reset"  # the sim node's episode reset (std_srvs/Trigger)
DIAGNOSTICS = "/diagnostics"
CLOCK = "/clock"

#: Command topic per ``output_mode`` value of the policy node.
COMMAND_TOPICS = {"joint_trajectory": TRAJECTORY, "forward_command": FORWARD}


def camera_topics(camera_names: Sequence[str]) -> Dict[str, Tuple[str, str]]:
    """camera -> (raw Image topic, CompressedImage topic): ``camera/image_raw`` for a
    single camera, ``camera/<name>/image_raw`` for each of several."""
    names = tuple(camera_names)
    if len(names) == 1:
        return {names[0]: ("camera/image_raw", "camera/image_raw/compressed")}
    return {c: (f"camera/{c}/image_raw", f"camera/{c}/image_raw/compressed") for c in names}


def input_topic(input_name: str) -> str:
    """The topic of a non-joint state input: its name (``core.config.ObservationSpec.state_inputs``)."""
    return input_name


def private(node_name: str, topic: str) -> str:
    """``~/x`` of node ``node_name`` (root namespace) as an absolute name: ``/node_name/x``."""
    return f"/{node_name}/{topic[2:]}" if topic.startswith("~/") else absolute(topic)


def absolute(topic: str) -> str:
    """A relative name as recorded at the root namespace (``joint_states`` -> ``/joint_states``)."""
    return topic if topic.startswith("/") else "/" + topic
