"""genpolicy_ros: real-time generative (flow matching / diffusion) robot policies for ROS 2."""

__version__ = "0.1.0"
