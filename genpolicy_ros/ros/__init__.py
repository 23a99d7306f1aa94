"""The ROS 2 edge: the only package that imports rclpy and message types."""
