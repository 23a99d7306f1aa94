"""Numeric core: torch/numpy only. Nothing here may import rclpy or ROS message types."""
