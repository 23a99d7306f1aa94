"""The logic of ``launch/policy.launch.py`` as a pure module (no ``launch`` import).

``launch/policy.launch.py`` declares :func:`declared_arguments`, evaluates them in an
``OpaqueFunction`` and turns the resulting strings into a :class:`NodeLaunchSpec` with
:func:`resolve`; everything that can go wrong (bad booleans, bad namespace, unknown log
level, missing params file) is decided and tested here.

Arguments (all strings, as launch passes them):

=================  =============================  =========================================
``model_path``     ``''`` = keep the params file  overrides the ``model_path`` parameter
``params_file``    installed config/policy.yaml   ROS params file (node name ``genpolicy``)
``output_mode``    ``''`` = keep the params file  joint_trajectory | forward_command
``namespace``      ``''``                         namespace of the node
``use_sim_time``   ``false``                      ``use_sim_time`` parameter (bag replay)
``autostart``      ``true``                       configure, then activate once inactive
``log_level``      ``info``                       debug | info | warn | error | fatal
=================  =============================  =========================================

Node parameters are passed as ``[params_file, {overrides}]`` so that launch arguments
win over the file (later entries override earlier ones in launch_ros).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple

PACKAGE = "genpolicy_ros"
EXECUTABLE = "policy_node"
NODE_NAME = "genpolicy"
PARAMS_FILE_RELATIVE = os.path.join("config", "policy.yaml")
LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")
OUTPUT_MODES = ("joint_trajectory", "forward_command")
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")
# ROS names: tokens of [A-Za-z0-9_] not starting with a digit, separated by '/'.
_NAMESPACE = re.compile(r"/?([A-Za-z_][A-Za-z0-9_]*)(/[A-Za-z_][A-Za-z0-9_]*)*/?")


@dataclass(frozen=True)
class LaunchArgument:
    """One ``DeclareLaunchArgument``: name, default (string), description, choices."""

    name: str
    default: str
    description: str
    choices: Optional[Tuple[str, ...]] = None


def source_params_file() -> str:
    """``config/policy.yaml`` of the source tree this module lives in."""
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.normpath(os.path.join(here, "..", "..", PARAMS_FILE_RELATIVE))


def default_params_file() -> str:
    """The installed ``share/genpolicy_ros/config/policy.yaml`` when the package is in the
    ament index (colcon install), else the source tree's ``config/policy.yaml``."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    except ImportError:
        return source_params_file()
    try:
        share = get_package_share_directory(PACKAGE)
    except (PackageNotFoundError, LookupError, ValueError, KeyError, OSError):
        return source_params_file()
    installed = os.path.join(share, PARAMS_FILE_RELATIVE)
    return installed if os.path.isfile(installed) else source_params_file()


def declared_arguments(params_file_default: Optional[str] = None) -> Tuple[LaunchArgument, ...]:
    """The launch file's arguments with their defaults."""
    params_file = params_file_default if params_file_default is not None else default_params_file()
    return (
        LaunchArgument("model_path", "",
                       "Model directory; empty keeps model_path from params_file."),
        LaunchArgument("params_file", params_file, "ROS 2 parameters file for the node."),
        LaunchArgument("output_mode", "",
                       "joint_trajectory or forward_command; empty keeps the params_file value.",
                       choices=("",) + OUTPUT_MODES),
        LaunchArgument("namespace", "", "Namespace of the policy node."),
        LaunchArgument("use_sim_time", "false", "Use /clock (bag replay, simulation)."),
        LaunchArgument("autostart", "true",
                       "Configure and activate the lifecycle node automatically."),
        LaunchArgument("log_level", "info", "Logger level of the node.", choices=LOG_LEVELS),
    )


def parse_bool(name: str, text: Any) -> bool:
    """Launch-style boolean: true/false, 1/0, yes/no, on/off (any case). ValueError else."""
    if isinstance(text, bool):
        return text
    value = str(text).strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"launch argument {name}: {text!r} is not a boolean "
                     f"(use one of {', '.join(_TRUE + _FALSE)})")


def normalize_namespace(text: str) -> str:
    """'' stays ''; 'robot' / '/robot/' -> '/robot'. ValueError for an invalid ROS name."""
    value = str(text).strip()
    if value in ("", "/"):
        return ""
    if not _NAMESPACE.fullmatch(value):
        raise ValueError(f"launch argument namespace: {text!r} is not a valid ROS namespace")
    return "/" + value.strip("/")


@dataclass(frozen=True)
class NodeLaunchSpec:
    """Everything the launch file needs to create the LifecycleNode."""

    namespace: str
    params_file: str
    parameter_overrides: Dict[str, Any] = field(default_factory=dict)
    arguments: Tuple[str, ...] = ()
    autostart: bool = True
    package: str = PACKAGE
    executable: str = EXECUTABLE
    name: str = NODE_NAME

    @property
    def parameters(self) -> list:
        """launch_ros ``parameters=``: the file first, then the overrides that win."""
        return [self.params_file, dict(self.parameter_overrides)]


def resolve(values: Mapping[str, str], params_file_default: Optional[str] = None,
            check_file: bool = True) -> NodeLaunchSpec:
    """Launch argument strings (missing -> defaults) -> :class:`NodeLaunchSpec`.

    Raises ValueError naming the argument for an unknown argument, a bad boolean, log
    level, output mode or namespace, or (``check_file``) a params file that does not exist.
    """
    declared = {a.name: a for a in declared_arguments(params_file_default)}
    unknown = sorted(set(values) - set(declared))
    if unknown:
        raise ValueError(f"unknown launch argument(s) {unknown}; known: {sorted(declared)}")
    merged = {name: str(values.get(name, arg.default)) for name, arg in declared.items()}

    params_file = os.path.expanduser(merged["params_file"].strip())
    if not params_file:
        raise ValueError("launch argument params_file must not be empty")
    if check_file and not os.path.isfile(params_file):
        raise ValueError(f"launch argument params_file: {params_file!r} does not exist")

    log_level = merged["log_level"].strip().lower()
    if log_level not in LOG_LEVELS:
        raise ValueError(f"launch argument log_level: {merged['log_level']!r} is not one of "
                         f"{', '.join(LOG_LEVELS)}")

    overrides: Dict[str, Any] = {"use_sim_time": parse_bool("use_sim_time",
                                                            merged["use_sim_time"])}
    model_path = merged["model_path"].strip()
    if model_path:
        overrides["model_path"] = os.path.expanduser(model_path)
    output_mode = merged["output_mode"].strip()
    if output_mode:
        if output_mode not in OUTPUT_MODES:
            raise ValueError(f"launch argument output_mode: {output_mode!r} is not one of "
                             f"{', '.join(OUTPUT_MODES)}")
        overrides["output_mode"] = output_mode

    return NodeLaunchSpec(
        namespace=normalize_namespace(merged["namespace"]),
        params_file=params_file,
        parameter_overrides=overrides,
        arguments=("--ros-args", "--log-level", log_level),
        autostart=parse_bool("autostart", merged["autostart"]),
    )
