"""Where the ALOHA scene comes from: the MJCF and meshes of the ``gym-aloha`` wheel.

The files (``bimanual_viperx_transfer_cube.xml`` including ``scene.xml``,
``vx300s_left.xml``, ``vx300s_right.xml``, ``vx300s_dependencies.xml`` and the STL meshes;
Apache-2.0) are read from the installed ``gym_aloha/assets/`` folder; they are not copied
into this repository. ``make install`` installs the wheel with ``pip install --no-deps``
(see the Makefile: gym-aloha pins ``mujoco<3.9`` and needs dm-control, neither of which we
want; MuJoCo 4 loads its MJCF unchanged). The folder is found with
:func:`importlib.util.find_spec`, which locates the package without running its
``__init__`` (that imports gymnasium and dm_control).

:func:`build_model` compiles the scene through :class:`mujoco.MjSpec` and adds, without
touching the installed files: a tool-centre-point site on each gripper (``left_tcp``,
``right_tcp``; the point between the finger pads, for the scripted expert's inverse
kinematics), and optionally switches off the scene's shadow map and 4x multisampling, which
dominate software (OSMesa) rendering: one ``top`` frame costs 39 / 40 / 46 ms at 120x160 /
240x320 / 480x640 with them and 5.5 / 6.2 / 7.8 ms without (measured here, 2 cores).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

SCENE_FILE = "bimanual_viperx_transfer_cube.xml"
PACKAGE = "gym_aloha"
GYM_ALOHA_VERSION = "0.1.5"  # the version the Makefile installs (and this code was checked with)
INSTALL_HINT = (f"run `make install`, or `pip install --no-deps gym-aloha=={GYM_ALOHA_VERSION}` "
                "(--no-deps: gym-aloha pins mujoco<3.9 and dm-control, which must not replace our MuJoCo)")

# Tool centre point: on the gripper_link's x axis (it points out between the fingers), this
# far from its origin. The finger pads span 0.064-0.154 m along that axis (measured from the
# finger meshes); 0.13 m leaves 2.4 cm of finger beyond a grasped cube's centre.
TCP_OFFSET_M = 0.13
TCP_SITES = {"left": "left_tcp", "right": "right_tcp"}
GRIPPER_BODIES = {"left": "vx300s_left/gripper_link", "right": "vx300s_right/gripper_link"}


class AlohaAssetsMissing(FileNotFoundError):
    """The gym-aloha assets are not installed."""


def assets_dir() -> Path:
    """The installed ``gym_aloha/assets`` folder; :class:`AlohaAssetsMissing` (with the
    install command) when the package or the scene file is absent."""
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        folder = Path(location) / "assets"
        if (folder / SCENE_FILE).is_file():
            return folder
    where = f" (package found at {locations}, but without assets/{SCENE_FILE})" if locations else ""
    raise AlohaAssetsMissing(f"the ALOHA scene needs the gym-aloha assets, which are not installed{where}: "
                             f"{INSTALL_HINT}")


def assets_available() -> bool:
    try:
        assets_dir()
    except AlohaAssetsMissing:
        return False
    return True


def scene_path() -> Path:
    return assets_dir() / SCENE_FILE


def build_model(render_shadows: bool = False, offscreen_size: tuple[int, int] | None = None):
    """Compile the transfer-cube scene (2 ms physics step, as shipped) with the TCP sites.

    ``render_shadows`` keeps the scene's shadow map and multisampling (slow on a CPU);
    ``offscreen_size`` = (H, W) enlarges the offscreen buffer when a camera needs more than
    the default 480x640.
    """
    import mujoco

    spec = mujoco.MjSpec.from_file(str(scene_path()))
    for arm, body_name in GRIPPER_BODIES.items():
        body = spec.body(body_name)
        if body is None:
            raise ValueError(f"{scene_path()}: no body {body_name!r} (unexpected gym-aloha version; "
                             f"this code was checked with {GYM_ALOHA_VERSION})")
        body.add_site(name=TCP_SITES[arm], pos=[TCP_OFFSET_M, 0.0, 0.0], size=[0.005, 0.005, 0.005],
                      rgba=[0.0, 0.0, 1.0, 0.0])
    if not render_shadows:
        spec.visual.quality.shadowsize = 0
        spec.visual.quality.offsamples = 0
    if offscreen_size is not None:
        height, width = offscreen_size
        spec.visual.global_.offheight = max(int(spec.visual.global_.offheight), int(height))
        spec.visual.global_.offwidth = max(int(spec.visual.global_.offwidth), int(width))
    return spec.compile()
