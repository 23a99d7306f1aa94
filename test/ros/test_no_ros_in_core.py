"""core/ and runtime/ never import ROS (architecture.md: "A test should fail if anything under
core/ or runtime/ imports rclpy"), and the generic layers never import a robot or task:
nothing in core/, runtime/, data/, training/, ros/ imports sim/ or tasks/ (they take plain
arguments: names, limits, callbacks; only sim/, tasks/ and the CLI wiring know tasks).

Two independent checks for each rule:
1. static: every ``import``/``from … import`` and every ``importlib.import_module("…")`` /
   ``__import__("…")`` with a literal name in the source is checked against the ROS names;
2. dynamic: each module is imported in a fresh interpreter whose ``sys.meta_path`` starts
   with a finder that records and refuses any ROS import, so a transitive or computed
   import is caught too (even one wrapped in ``try/except ImportError``).
"""
import ast
import json
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHECKED_PACKAGES = ("genpolicy_ros/core", "genpolicy_ros/runtime")
ROS_EXACT = {"rclpy", "rclpy_lifecycle", "rcl", "rosidl_runtime_py", "rosbag2_py", "cv_bridge",
             "message_filters", "ament_index_python", "tf2_ros", "rmw"}
ROS_PREFIXES = ("rosidl", "launch", "rcl", "rmw", "ros2")
ROS_SUFFIXES = ("_msgs", "_srvs", "_actions", "_interfaces")


def is_ros_module(name: str) -> bool:
    top = name.split(".")[0]
    return (top in ROS_EXACT or top.startswith(ROS_PREFIXES) or top.endswith(ROS_SUFFIXES))


def python_files():
    for package in CHECKED_PACKAGES:
        for folder, _, files in os.walk(os.path.join(ROOT, package)):
            for name in sorted(files):
                if name.endswith(".py"):
                    yield os.path.join(folder, name)


def ros_imports_in_source(source: str):
    """[(line, module)] of every ROS import found in ``source`` by the AST."""
    found = []
    for node in ast.walk(ast.parse(source)):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            callee = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if callee in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                names = [node.args[0].value]
        found += [(node.lineno, n) for n in names if is_ros_module(n)]
    return found


def module_names():
    names = []
    for path in python_files():
        rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
        names.append(rel[: -len(".__init__")] if rel.endswith(".__init__") else rel)
    return names


def test_classifier_and_scanner_catch_ros_imports():
    for name in ("rclpy", "rclpy.node", "sensor_msgs.msg", "std_srvs.srv", "launch_ros.actions",
                 "rosidl_runtime_py", "rcl_interfaces.msg", "builtin_interfaces.msg",
                 "lifecycle_msgs.msg", "launch"):
        assert is_ros_module(name), name
    for name in ("numpy", "torch", "scipy.optimize", "safetensors.torch", "genpolicy_ros.core",
                 "onnxruntime", "tensorrt", "mujoco", "cv2"):
        assert not is_ros_module(name), name
    bad = textwrap.dedent("""
        import numpy
        import rclpy
        from sensor_msgs.msg import Image
        import importlib
        def f():
            from std_srvs.srv import Trigger
            return importlib.import_module("rosidl_runtime_py"), __import__("launch_ros")
    """)
    assert sorted(m for _, m in ros_imports_in_source(bad)) == sorted(
        ["rclpy", "sensor_msgs.msg", "std_srvs.srv", "rosidl_runtime_py", "launch_ros"])


def test_no_ros_import_in_core_or_runtime_source():
    files = list(python_files())
    assert len(files) >= 2, f"expected core/ and runtime/ modules, found {files}"
    offenders = []
    for path in files:
        with open(path, encoding="utf-8") as f:
            for line, module in ros_imports_in_source(f.read()):
                offenders.append(f"{os.path.relpath(path, ROOT)}:{line} imports {module}")
    assert not offenders, "ROS imports in ROS-free layers:\n" + "\n".join(offenders)


_CHILD = textwrap.dedent(r"""
    import importlib, importlib.abc, json, sys, traceback
    ROS_EXACT = set(json.loads(sys.argv[1])); PREFIXES = tuple(json.loads(sys.argv[2]))
    SUFFIXES = tuple(json.loads(sys.argv[3])); modules = json.loads(sys.argv[4])
    attempts = []
    recording = [True]

    def is_ros(name):
        top = name.split(".")[0]
        return top in ROS_EXACT or top.startswith(PREFIXES) or top.endswith(SUFFIXES)

    class RefuseRos(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if is_ros(name):
                who = [f"{f.filename}:{f.lineno}" for f in traceback.extract_stack()[:-1]
                       if not f.filename.startswith("<")]
                if recording[0]:
                    attempts.append({"module": name, "importer": who[-1] if who else "?"})
                raise ImportError(f"ROS import {name!r} refused in a ROS-free layer")
            return None

    sys.meta_path.insert(0, RefuseRos())
    for name in list(sys.modules):      # nothing ROS may be preloaded
        if is_ros(name):
            del sys.modules[name]
    errors = {}
    for module in modules:
        try:
            importlib.import_module(module)
        except BaseException as exc:    # report, keep going
            errors[module] = f"{type(exc).__name__}: {exc}"
    probe = None
    recording[0] = False
    try:
        import rclpy  # noqa: F401  (positive control: the hook must refuse this)
    except ImportError as exc:
        probe = str(exc)
    print(json.dumps({"attempts": attempts, "errors": errors, "probe": probe}))
""")


def _run_child(modules):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(sorted(ROS_EXACT)), json.dumps(ROS_PREFIXES),
         json.dumps(ROS_SUFFIXES), json.dumps(modules)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_core_and_runtime_never_touches_ros():
    modules = module_names()
    assert "genpolicy_ros.core" in modules and "genpolicy_ros.runtime" in modules
    report = _run_child(modules)
    assert report["probe"] and "refused" in report["probe"], "the import hook is not active"
    assert not report["attempts"], f"ROS imported while importing core/runtime: {report['attempts']}"
    # a module that cannot even be imported cannot have been checked
    assert not report["errors"], f"core/runtime modules failed to import: {report['errors']}"


def test_hook_catches_a_ros_import_wrapped_in_try(tmp_path, monkeypatch):
    """Positive control for the dynamic check: a module that imports rclpy inside
    try/except ImportError is still reported."""
    pkg = tmp_path / "sneaky_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("try:\n    import rclpy\nexcept ImportError:\n    rclpy = None\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    report = _run_child(["sneaky_pkg"])
    assert [a["module"] for a in report["attempts"]] == ["rclpy"], report
    assert "sneaky_pkg" in report["attempts"][0]["importer"], report
    assert not report["errors"]


# --------------------------------------------------------------------------- no task in the generic layers
LAYER_PACKAGES = ("genpolicy_ros/core", "genpolicy_ros/runtime", "genpolicy_ros/data", "genpolicy_ros/training",
                  "genpolicy_ros/ros")
TASK_PACKAGES = ("genpolicy_ros.sim", "genpolicy_ros.tasks")


def is_task_module(name: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in TASK_PACKAGES)


def layer_files():
    for package in LAYER_PACKAGES:
        for folder, _, files in os.walk(os.path.join(ROOT, package)):
            for name in sorted(files):
                if name.endswith(".py"):
                    yield os.path.join(folder, name)


def imported_modules(source: str, module: str, is_package: bool = False):
    """[(line, absolute module name)] of every import in ``source`` (relative ones resolved
    against ``module``, the dotted name of the file; ``from . import x`` also yields ``pkg.x``)."""
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((node.lineno, target))
            found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            callee = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if callee in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value))
    return found


def test_task_import_scanner_resolves_relative_imports():
    bad = textwrap.dedent("""
        from ..sim.reach_env import ARM_JOINTS
        from .. import tasks
        import genpolicy_ros.tasks.reach
        def f():
            from ..sim import node
            return importlib.import_module("genpolicy_ros.sim.expert")
        from ..core.config import PolicyConfig
        from . import bags
    """)
    found = [m for _, m in imported_modules(bad, "genpolicy_ros.data.bags") if is_task_module(m)]
    assert sorted(found) == sorted(["genpolicy_ros.sim.reach_env", "genpolicy_ros.sim.reach_env.ARM_JOINTS",
                                    "genpolicy_ros.tasks", "genpolicy_ros.tasks.reach", "genpolicy_ros.sim",
                                    "genpolicy_ros.sim.node", "genpolicy_ros.sim.expert"]), found
    # A package's __init__ resolves "." to itself.
    assert ("genpolicy_ros.ros.topics" in
            [m for _, m in imported_modules("from .topics import JOINT_STATES", "genpolicy_ros.ros", True)])


def _dotted(path: str):
    rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
    is_package = rel.endswith(".__init__")
    return (rel[: -len(".__init__")] if is_package else rel), is_package


def test_no_sim_or_task_import_in_the_generic_layers_source():
    files = list(layer_files())
    assert len(files) >= 20, f"expected the generic layers' modules, found {len(files)}"
    offenders = []
    for path in files:
        module, is_package = _dotted(path)
        with open(path, encoding="utf-8") as f:
            for line, name in imported_modules(f.read(), module, is_package):
                if is_task_module(name):
                    offenders.append(f"{os.path.relpath(path, ROOT)}:{line} imports {name}")
    assert not offenders, "generic layers import a task or the simulator:\n" + "\n".join(offenders)


_TASK_CHILD = textwrap.dedent(r"""
    import importlib, importlib.abc, json, sys, traceback
    forbidden = tuple(json.loads(sys.argv[1])); modules = json.loads(sys.argv[2])
    attempts = []

    class RefuseTasks(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if any(name == p or name.startswith(p + ".") for p in forbidden):
                who = [f"{f.filename}:{f.lineno}" for f in traceback.extract_stack()[:-1]
                       if not f.filename.startswith("<")]
                attempts.append({"module": name, "importer": who[-1] if who else "?"})
                raise ImportError(f"task import {name!r} refused in a generic layer")
            return None

    sys.meta_path.insert(0, RefuseTasks())
    errors = {}
    for module in modules:
        try:
            importlib.import_module(module)
        except BaseException as exc:
            errors[module] = f"{type(exc).__name__}: {exc}"
    print(json.dumps({"attempts": attempts, "errors": errors}))
""")


def test_importing_the_generic_layers_never_imports_a_task():
    pytest.importorskip("rclpy")  # ros/ modules import it
    modules = [_dotted(p)[0] for p in layer_files()]
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", _TASK_CHILD, json.dumps(TASK_PACKAGES), json.dumps(modules)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert not report["attempts"], f"a task or the simulator imported by a generic layer: {report['attempts']}"
    assert not report["errors"], f"generic-layer modules failed to import: {report['errors']}"
    probe = subprocess.run([sys.executable, "-c", _TASK_CHILD, json.dumps(TASK_PACKAGES),
                            json.dumps(["genpolicy_ros.sim.reach_env"])],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert json.loads(probe.stdout.strip().splitlines()[-1])["attempts"], "the import hook is not active"
