"""Spinning a command-line node until Ctrl-C or an external shutdown."""
from __future__ import annotations


def spin_until_shutdown(executor) -> None:
    """``executor.spin()`` that returns normally on Ctrl-C and on an external shutdown.

    rclpy's signal handler shuts the context down on Ctrl-C. Landing while the executor
    rebuilds its wait set, that surfaces as an ``RCLError`` ("the given context is not
    valid") instead of ``ExternalShutdownException``: an error raised once the context is
    shut down counts as a shutdown too. Any other error propagates.
    """
    import rclpy
    from rclpy.executors import ExternalShutdownException

    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        return
    except Exception:
        if rclpy.ok():
            raise
