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
        if _is_events_executor(executor):
            _spin_events_executor(executor)
        else:
            executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        return
    except Exception:
        if rclpy.ok():
            raise


#: how long one ``spin_once`` of the EventsExecutor may block (s): the loop re-checks the context
EVENTS_SPIN_ONCE_TIMEOUT_S = 0.1


def _is_events_executor(executor) -> bool:
    return type(executor).__name__ == "EventsExecutor"


def _spin_events_executor(executor) -> None:
    """``spin_once`` until the context shuts down (see :func:`spin_until_shutdown`)."""
    context = executor.context
    while context.ok():
        executor.spin_once(timeout_sec=EVENTS_SPIN_ONCE_TIMEOUT_S)
