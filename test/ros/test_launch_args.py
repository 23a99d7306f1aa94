"""The launch file's logic (genpolicy_ros.ros.launch_args) without launch / launch_ros."""
import os
import py_compile

import pytest

from genpolicy_ros.ros import launch_args as L

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SOURCE_YAML = os.path.join(ROOT, "config", "policy.yaml")


def test_launch_args_does_not_import_launch():
    source = open(L.__file__).read()
    assert "import launch" not in source and "from launch" not in source


def test_declared_arguments_and_defaults():
    args = {a.name: a for a in L.declared_arguments("/x/policy.yaml")}
    assert set(args) == {"model_path", "params_file", "output_mode", "namespace",
                         "use_sim_time", "autostart", "log_level"}
    assert args["params_file"].default == "/x/policy.yaml"
    assert args["autostart"].default == "true"
    assert args["use_sim_time"].default == "false"
    assert args["log_level"].default in args["log_level"].choices
    assert all(isinstance(a.default, str) for a in args.values())


def test_resolve_defaults():
    spec = L.resolve({})
    assert spec.params_file == SOURCE_YAML  # not installed in the ament index here
    assert (spec.package, spec.executable, spec.name) == ("genpolicy_ros", "policy_node",
                                                          "genpolicy")
    assert spec.namespace == ""
    assert spec.autostart is True
    assert spec.parameter_overrides == {"use_sim_time": False}  # file values untouched
    assert spec.parameters == [SOURCE_YAML, {"use_sim_time": False}]
    assert spec.arguments == ("--ros-args", "--log-level", "info")


def test_resolve_overrides(tmp_path):
    params = tmp_path / "mine.yaml"
    params.write_text("/**:\n  ros__parameters: {}\n")
    spec = L.resolve({"model_path": "/models/pusht", "params_file": str(params),
                      "output_mode": "forward_command", "namespace": "robot/",
                      "use_sim_time": "True", "autostart": "false", "log_level": "DEBUG"})
    assert spec.params_file == str(params)
    assert spec.parameters[0] == str(params)
    assert spec.parameter_overrides == {"use_sim_time": True, "model_path": "/models/pusht",
                                        "output_mode": "forward_command"}
    assert spec.namespace == "/robot"
    assert spec.autostart is False
    assert spec.arguments[-1] == "debug"


@pytest.mark.parametrize("text, value", [("true", True), ("True", True), ("1", True),
                                         ("yes", True), ("on", True), ("false", False),
                                         ("FALSE", False), ("0", False), ("no", False),
                                         ("off", False), (" true ", True)])
def test_autostart_parsing(text, value):
    assert L.resolve({"autostart": text}).autostart is value


@pytest.mark.parametrize("values, word", [
    ({"autostart": "maybe"}, "autostart"),
    ({"autostart": ""}, "autostart"),
    ({"use_sim_time": "2"}, "use_sim_time"),
    ({"log_level": "verbose"}, "log_level"),
    ({"output_mode": "trajectory"}, "output_mode"),
    ({"namespace": "1robot"}, "namespace"),
    ({"namespace": "ro bot"}, "namespace"),
    ({"params_file": "/does/not/exist.yaml"}, "params_file"),
    ({"params_file": ""}, "params_file"),
    ({"modelpath": "/x"}, "unknown"),
])
def test_bad_arguments_name_the_argument(values, word):
    with pytest.raises(ValueError, match=word):
        L.resolve(values)


def test_params_file_default_prefers_installed_share(tmp_path, monkeypatch):
    # a fake install prefix registered in the ament index
    index = tmp_path / "share" / "ament_index" / "resource_index" / "packages"
    index.mkdir(parents=True)
    (index / "genpolicy_ros").write_text("")
    installed = tmp_path / "share" / "genpolicy_ros" / "config" / "policy.yaml"
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(tmp_path))
    # registered but the file is missing -> source tree
    assert L.default_params_file() == SOURCE_YAML
    installed.parent.mkdir(parents=True)
    installed.write_text("/**/genpolicy:\n  ros__parameters: {}\n")
    assert L.default_params_file() == str(installed)
    assert L.resolve({}).params_file == str(installed)
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(tmp_path / "nowhere"))
    assert L.default_params_file() == SOURCE_YAML


def test_shipped_params_file_has_every_parameter():
    yaml = pytest.importorskip("yaml")
    from genpolicy_ros.ros.parameters import SPECS, NodeParams

    data = yaml.safe_load(open(SOURCE_YAML))
    (node_key,) = data
    assert node_key.endswith("genpolicy")
    values = data[node_key]["ros__parameters"]
    # joint_names is deliberately left unset (rcl reads an empty YAML list as NOT_SET)
    assert set(values) == set(SPECS) - {"joint_names"}
    assert NodeParams.from_values(values).to_dict() == NodeParams().to_dict()


def test_launch_file_compiles(tmp_path):
    path = os.path.join(ROOT, "launch", "policy.launch.py")
    py_compile.compile(path, cfile=str(tmp_path / "policy.launch.pyc"), doraise=True)
    source = open(path).read()
    assert "generate_launch_description" in source
    assert "launch_args.resolve" in source
    for word in ("TRANSITION_CONFIGURE", "TRANSITION_ACTIVATE", "OnStateTransition",
                 "LifecycleNode"):
        assert word in source
