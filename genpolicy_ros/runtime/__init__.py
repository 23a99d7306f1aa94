"""Real-time execution pieces. ROS-free: nothing here may import rclpy or ROS message types."""
