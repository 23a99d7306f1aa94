"""Build script: works with colcon (ament_python) on ROS 2 Humble..Kilted and with plain pip.

colcon installs console scripts into lib/genpolicy_ros (setup.cfg) so that
`ros2 run genpolicy_ros policy_node` finds them; pip installs them on PATH.
"""
import os
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "genpolicy_ros"


def _data_files():
    files = [
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
    ]
    for folder in ("launch", "config"):
        found = [p for p in glob(f"{folder}/*") if os.path.isfile(p)]
        if found:
            files.append((f"share/{PACKAGE}/{folder}", found))
    # models/<name>/{config.json, model.safetensors, ...}: keep the per-model folders.
    for model_dir in sorted(glob("models/*")):
        if os.path.isdir(model_dir):
            found = [p for p in glob(f"{model_dir}/*") if os.path.isfile(p)]
            if found:
                files.append((f"share/{PACKAGE}/{model_dir}", found))
    return files


# The numeric core and training. torch is deliberately unpinned here (any >=2.1 works);
# the Makefile installs the CPU build on machines without torch.
INSTALL_REQUIRES = [
    "numpy>=1.23",
    "scipy>=1.9",
    "torch>=2.1",
    "safetensors>=0.4",
    "tqdm>=4.60",
    "matplotlib>=3.5",
    "pyyaml>=5.4",
]

EXTRAS = {
    # Inference backends (CPU): ONNX Runtime and OpenVINO (no torch dependency). TensorRT / CUDA
    # are imported lazily and never required (extra "gpu").
    "onnx": ["onnx>=1.14", "onnxruntime>=1.16", "openvino>=2024.0"],
    # Data, simulation and image conversion; LeRobotDataset (parquet + MP4 through PyAV;
    # pandas writes meta/tasks.parquet the way LeRobot reads it) and robomimic (HDF5) readers.
    "data": ["rosbags>=0.11", "opencv-python-headless>=4.7", "pyarrow>=14", "pandas>=2.0", "av>=12",
             "h5py>=3.8"],
    # imageio writes episode GIFs (python -m genpolicy_ros.sim.aloha.episode_gif).
    "sim": ["mujoco>=3.0", "imageio>=2.30"],
    # The real ROS 2 client library and messages as PyPI wheels, for machines without a
    # ROS 2 installation. On a ROS 2 machine the system packages are used instead.
    "ros": [
        "ros-rclpy",
        "ros-rmw-fastrtps-cpp",
        "ros-sensor-msgs",
        "ros-std-msgs",
        "ros-trajectory-msgs",
        "ros-diagnostic-msgs",
        "ros-std-srvs",
        "ros-rcl-interfaces",
        "ros-lifecycle-msgs",
        "ros-builtin-interfaces",
        "ros-rosgraph-msgs",
        "ros-geometry-msgs",
    ],
    # Test-only peers.
    # colcon builds the package in a workspace in test/ros/test_colcon_install.py.
    "test": ["pytest>=7", "pytest-timeout>=2.1", "diffusers>=0.25", "colcon-common-extensions>=0.3",
             "hypothesis>=6.80", "ruff>=0.5"],
}
EXTRAS["all"] = sorted({req for name, reqs in EXTRAS.items() for req in reqs})
# GPU engines (NVIDIA, Linux x86_64): never part of "all" — torch-tensorrt pins one torch release
# and pulls that CUDA build of torch (GBs). scripts/gpu_check.sh installs it in a venv of its own.
EXTRAS["gpu"] = ["torch-tensorrt>=2.5", "tensorrt>=10.0", "onnx>=1.14"]

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    data_files=_data_files(),
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    zip_safe=True,
    python_requires=">=3.10",
    maintainer="genpolicy_ros maintainers",
    maintainer_email="maintainers@genpolicy-ros.invalid",
    description="Real-time generative (flow matching / diffusion) robot policies for ROS 2",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "genpolicy = genpolicy_ros.cli:main",
            "policy_node = genpolicy_ros.cli:policy_node_main",
        ],
    },
)
