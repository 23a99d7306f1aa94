"""The node's parameter table: every rejection class, all-or-nothing batches (reliability row 13),
descriptors, and the table declared on a real rclpy node with the shipped params file."""
import math
import os

import pytest

pytest.importorskip("rcl_interfaces.msg")

from genpolicy_ros.ros import parameters as P  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONTRACT = {  # architecture.md: name -> runtime-changeable (★)
    "model_path": False, "backend": False, "device": False, "sampler": True, "num_steps": True,
    "guidance_scale": True, "ddim_eta": True, "control_rate_hz": True, "action_horizon": True,
    "chunk_blending": True, "inference_delay_steps": True, "output_mode": False,
    "joint_names": False, "max_joint_velocity": True, "observation_timeout_s": True,
    "enabled": True, "seed": False,
    # An extension of architecture.md's table: the safety filter's acceleration limit,
    # fixed at 20 rad/s² in EngineSettings before; a robot with other dynamics sets it.
    "max_joint_acceleration": True,
    # Extensions (issue 9): the tracking check's tolerance, what to do with unstamped
    # messages, how camera frames of another size are fitted.
    "max_tracking_error": True, "unstamped_inputs": True, "image_resize": True,
    # Extensions (issue 11): inference precision, latency emulation for the slow-model study.
    "precision": False, "emulate_latency_ms": False, "rtc_prefix_mode": True,
}


def test_table_matches_contract():
    assert {s.name: s.runtime for s in P.PARAMETERS} == CONTRACT
    defaults = P.NodeParams().to_dict()
    assert defaults == {**P.default_values(), "joint_names": ()}


def _defaults():
    return P.NodeParams().to_dict()


@pytest.mark.parametrize("name, value, word", [
    # range
    ("num_steps", 0, "out of range"), ("num_steps", 1001, "out of range"),
    ("guidance_scale", 20.5, "out of range"), ("ddim_eta", -0.1, "out of range"),
    ("control_rate_hz", 0.5, "out of range"), ("action_horizon", 0, "out of range"),
    ("inference_delay_steps", -2, "out of range"),
    ("max_joint_velocity", 0.0, "out of range"),          # exclusive lower bound
    ("max_joint_acceleration", 0.0, "out of range"), ("max_joint_acceleration", 1e5, "out of range"),
    ("observation_timeout_s", 0, "out of range"),
    # type
    ("num_steps", 10.0, "expected integer"), ("num_steps", "10", "expected integer"),
    ("num_steps", True, "expected integer"), ("guidance_scale", "1.0", "expected double"),
    ("guidance_scale", False, "expected double"), ("enabled", 1, "expected bool"),
    ("sampler", 3, "expected string"),
    # NaN / Inf
    ("guidance_scale", math.nan, "finite"), ("ddim_eta", math.inf, "finite"),
    ("control_rate_hz", -math.inf, "finite"),
    # enum
    ("sampler", "euler", "one of"), ("chunk_blending", "RTC", "one of"),
    ("unstamped_inputs", "now", "one of"), ("image_resize", "crop", "one of"),
    ("max_tracking_error", 0.0, "out of range"),
    # unknown name
    ("num_step", 5, "unknown"),
])
def test_each_rejection_class(name, value, word):
    current = _defaults()
    ok, reason, values = P.validate_update(current, [(name, value)])
    assert not ok
    assert word in reason, reason
    assert values == current


@pytest.mark.parametrize("name, value", [("model_path", "/tmp/m"), ("backend", "torch"),
                                         ("output_mode", "forward_command"), ("seed", 3),
                                         ("joint_names", ["a"]), ("device", "cpu")])
def test_static_parameters_read_only_when_configured(name, value):
    ok, reason, _ = P.validate_update(_defaults(), [(name, value)], configured=True)
    assert not ok and "read-only" in reason, reason
    ok, reason, values = P.validate_update(_defaults(), [(name, value)], configured=False)
    assert ok, reason
    assert values[name] == (tuple(value) if isinstance(value, list) else value)


def test_static_value_checks_when_unconfigured():
    for name, value in [("backend", "tflite"), ("device", "gpu"), ("device", "cuda:x"),
                        ("joint_names", ["a", "a"]), ("joint_names", ["a", ""]),
                        ("joint_names", "a,b"), ("seed", -1), ("output_mode", "trajectory")]:
        ok, reason, _ = P.validate_update(_defaults(), [(name, value)], configured=False)
        assert not ok, (name, value)


def test_batch_with_one_bad_value_applies_nothing():
    current = _defaults()
    before = dict(current)
    changes = [("num_steps", 4), ("sampler", "ddim"), ("guidance_scale", math.nan)]
    ok, reason, values = P.validate_update(current, changes)
    assert not ok and "guidance_scale" in reason
    assert values == before and current == before
    # the same batch without the bad value goes through whole
    ok, reason, values = P.validate_update(current, changes[:2])
    assert ok, reason
    assert (values["num_steps"], values["sampler"]) == (4, "ddim")
    assert current == before  # input never mutated


def test_int_for_double_is_accepted_as_float():
    ok, reason, values = P.validate_update(_defaults(), [("guidance_scale", 2),
                                                         ("control_rate_hz", 100)])
    assert ok, reason
    assert values["guidance_scale"] == 2.0 and isinstance(values["guidance_scale"], float)
    assert isinstance(values["control_rate_hz"], float)


def test_node_params_validates_itself():
    params = P.NodeParams(num_steps=4, guidance_scale=3, joint_names=["a", "b"])
    assert params.joint_names == ("a", "b") and params.guidance_scale == 3.0
    assert params.dt == pytest.approx(1.0 / 100.0)
    with pytest.raises(ValueError, match="ddim_eta"):
        P.NodeParams(ddim_eta=2.0)
    with pytest.raises(ValueError, match="unknown"):
        P.NodeParams.from_values({"num_stepz": 3})
    with pytest.raises(Exception):
        params.num_steps = 5  # frozen


def test_descriptors_carry_ranges_and_read_only():
    from rcl_interfaces.msg import ParameterType

    descriptors = P.build_descriptors()
    assert set(descriptors) == set(CONTRACT)
    for name, runtime in CONTRACT.items():
        assert descriptors[name].read_only is (not runtime), name
        assert descriptors[name].description
    d = descriptors["num_steps"]
    assert d.type == ParameterType.PARAMETER_INTEGER and not d.dynamic_typing
    assert (d.integer_range[0].from_value, d.integer_range[0].to_value) == (1, 1000)
    d = descriptors["guidance_scale"]
    assert d.dynamic_typing and len(d.integer_range) == 0
    assert (d.floating_point_range[0].from_value, d.floating_point_range[0].to_value) == (0.0, 20.0)
    assert descriptors["inference_delay_steps"].integer_range[0].from_value == -1
    assert "flow" in descriptors["sampler"].additional_constraints
    assert not any(d.read_only for d in P.build_descriptors(static_read_only=False).values())


def test_declared_on_real_rclpy_node_with_params_file(tmp_path):
    """Descriptors + shipped YAML + on-set callback on a real node: ros2 param set semantics."""
    rclpy = pytest.importorskip("rclpy")
    from rclpy.context import Context
    from rclpy.node import Node
    from rclpy.parameter import Parameter

    user_file = tmp_path / "user.yaml"  # a second file overrides the shipped one
    user_file.write_text("/robot/genpolicy:\n  ros__parameters:\n"
                         "    guidance_scale: 2\n"          # an int for a double
                         "    joint_names: [j1, j2]\n")
    ctx = Context()
    rclpy.init(context=ctx, args=["--ros-args",
                                  "--params-file", os.path.join(ROOT, "config", "policy.yaml"),
                                  "--params-file", str(user_file)])
    try:
        node = Node("genpolicy", namespace="robot", context=ctx)
        try:
            node.declare_parameters("", P.declaration_list())
            values = {p.name: p.value for p in node.get_parameters(list(CONTRACT))}
            params = P.NodeParams.from_values(values)
            assert params.guidance_scale == 2.0 and params.joint_names == ("j1", "j2")
            state = {"current": params.to_dict()}

            def on_set(parameters):
                result, new_values = P.validate_ros_parameters(state["current"], parameters)
                if result.successful:
                    state["current"] = new_values
                return result

            node.add_on_set_parameters_callback(on_set)
            ok = node.set_parameters([Parameter("num_steps", value=4)])[0]
            assert ok.successful, ok.reason
            ok = node.set_parameters([Parameter("guidance_scale", value=3)])[0]  # int → double
            assert ok.successful, ok.reason
            assert state["current"]["guidance_scale"] == 3.0
            rejected = {
                "range": Parameter("num_steps", value=0),
                "type": Parameter("num_steps", value="4"),
                "type_double": Parameter("guidance_scale", value="high"),  # dynamic typing
                "range_double": Parameter("guidance_scale", value=25),
                "nan": Parameter("ddim_eta", value=math.nan),
                "enum": Parameter("sampler", value="euler"),
                "read_only": Parameter("model_path", value="/x"),
                "exclusive_zero": Parameter("max_joint_velocity", value=0.0),
            }
            for label, param in rejected.items():
                result = node.set_parameters([param])[0]
                assert not result.successful and result.reason, label
            batch = node.set_parameters_atomically([Parameter("sampler", value="ddim"),
                                                    Parameter("num_steps", value=5000)])
            assert not batch.successful
            assert node.get_parameter("sampler").value == "auto"
            assert node.get_parameter("num_steps").value == 4
            assert state["current"]["num_steps"] == 4 and state["current"]["sampler"] == "auto"
            # use_sim_time is rclpy's, not ours: passes through the callback
            assert node.set_parameters([Parameter("use_sim_time", value=True)])[0].successful
        finally:
            node.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)
