"""The package as a ROS 2 user builds it: ``colcon build`` in a workspace, then the
**installed** ``policy_node`` (``source install/setup.bash``; ``ros2 run`` finds it in
``lib/genpolicy_ros``) driven to ``active`` on the installed default model over DDS.

colcon comes from PyPI (``colcon-common-extensions``, the ``test`` extra) and builds
against the venv's ROS 2 wheels; no sourced ROS is needed for an ``ament_python``
package (colcon writes ``install/setup.bash``, which sets ``AMENT_PREFIX_PATH``,
``PYTHONPATH`` and ``COLCON_PREFIX_PATH`` for the install prefix itself).
"""
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("rclpy")
pytestmark = pytest.mark.ros

DOMAIN_ID = 83
REPO = Path(__file__).resolve().parents[2]
PACKAGE = "genpolicy_ros"
#: What setup.py reads from the source tree (package.xml, the data files, the code).
SOURCE_ENTRIES = ("genpolicy_ros", "models", "config", "launch", "resource", "package.xml", "setup.py",
                  "setup.cfg")


def _colcon() -> str:
    here = Path(sys.executable).parent / "colcon"
    found = str(here) if here.is_file() else shutil.which("colcon")
    if not found:
        pytest.skip("colcon is not installed (pip install colcon-common-extensions; `make install` "
                    "installs it with the test extra)")
    return found


def _workspace(tmp_path: Path) -> Path:
    """ws/src/genpolicy_ros with the source entries symlinked (colcon builds out of tree)."""
    ws = tmp_path / "ws"
    src = ws / "src" / PACKAGE
    src.mkdir(parents=True)
    for name in SOURCE_ENTRIES:
        assert (REPO / name).exists(), f"{REPO / name} is missing"
        (src / name).symlink_to(REPO / name)
    return ws


def _build_env() -> dict:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.pop("PYTHONPATH", None)  # the build must not see this checkout through PYTHONPATH
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """colcon-build the package once; returns the workspace."""
    colcon = _colcon()
    ws = _workspace(tmp_path_factory.mktemp("colcon"))
    proc = subprocess.run([colcon, "build", "--event-handlers", "console_direct-"], cwd=ws, env=_build_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=180)
    assert proc.returncode == 0, f"colcon build failed ({proc.returncode}):\n{proc.stdout[-4000:]}"
    assert "1 package finished" in proc.stdout, proc.stdout[-2000:]
    return ws


def test_colcon_install_layout(installed):
    prefix = installed / "install" / PACKAGE
    share = prefix / "share" / PACKAGE
    node = prefix / "lib" / PACKAGE / "policy_node"
    assert node.is_file() and os.access(node, os.X_OK), f"{node} missing or not executable"
    assert (prefix / "lib" / PACKAGE / "genpolicy").is_file()
    assert (prefix / "share" / "ament_index" / "resource_index" / "packages" / PACKAGE).is_file()
    assert (share / "package.xml").read_text() == (REPO / "package.xml").read_text()
    assert (share / "launch" / "policy.launch.py").is_file()
    assert (share / "config" / "policy.yaml").is_file()
    shipped = sorted(p.name for p in (REPO / "models").iterdir() if p.is_dir())
    assert shipped, "no shipped models"
    for name in shipped:
        for f in (REPO / "models" / name).iterdir():
            if f.is_file():
                got = share / "models" / name / f.name
                assert got.is_file() and got.stat().st_size == f.stat().st_size, f"{got} missing or differs"
    assert (installed / "install" / "setup.bash").is_file()
    site = list((prefix / "lib").glob("python3*/site-packages/genpolicy_ros/__init__.py"))
    assert len(site) == 1, "the Python package is not installed under the prefix"


def test_installed_policy_node_reaches_active_over_lifecycle_services(installed):
    import rclpy
    from lifecycle_msgs.srv import GetState

    import policy_node_harness as h  # test/ros is on pytest's pythonpath

    prefix = installed / "install" / PACKAGE
    node = prefix / "lib" / PACKAGE / "policy_node"
    env = dict(_build_env(), ROS_DOMAIN_ID=str(DOMAIN_ID), PYTHONUNBUFFERED="1",
               RCUTILS_LOGGING_BUFFERED_STREAM="0")
    for var in ("AMENT_PREFIX_PATH", "COLCON_PREFIX_PATH"):
        env.pop(var, None)
    script = f"source install/setup.bash && exec {node} --ros-args -p control_rate_hz:=20.0"
    proc = subprocess.Popen(["bash", "-c", script], cwd=installed, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    harness = h.RosHarness(DOMAIN_ID)
    lines = []
    try:
        client = rclpy.create_node("colcon_test_client", context=harness.context)
        harness.node = client
        robot = harness.start(client)  # spins the client; the "robot" only calls services
        robot.policy_node = "genpolicy"

        def state() -> str:
            return robot.call(GetState, "/genpolicy/get_state", GetState.Request()).current_state.label

        assert state() == "unconfigured"
        assert robot.transition(h.CONFIGURE), "configure failed"
        assert state() == "inactive"
        assert robot.transition(h.ACTIVATE), "activate failed"
        assert state() == "active"
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30.0)
        lines = out.splitlines()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            lines = out.splitlines()
        harness.close()
    text = "\n".join(lines)
    default_model = prefix / "share" / PACKAGE / "models" / "reach_flow"
    assert re.search(rf"configured in [0-9.]+ s: model {re.escape(str(default_model))} ", text), text[-3000:]
    assert "active: executing at 20 Hz" in text, text[-3000:]
    assert proc.returncode == 0, f"exit status {proc.returncode}:\n{text[-3000:]}"
    assert "Traceback" not in text, text[-3000:]
