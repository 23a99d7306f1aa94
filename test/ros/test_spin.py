"""``spin_until_shutdown`` (genpolicy_ros/ros/spin.py) dispatches callbacks on both executors
``genpolicy node --executor`` offers, and returns when the context shuts down.

rclpy's EventsExecutor ``spin()`` dispatches nothing with the PyPI wheels (the reason the
node under ``--executor events`` never commanded); the helper spins it with ``spin_once``."""
import threading

import pytest

pytest.importorskip("rclpy")
pytestmark = pytest.mark.ros

DOMAIN_ID = 230  # fixed: clear of the other suites (40..226)


@pytest.mark.timeout(60, method="thread")  # a spin() that never returns fails the file, not CI
@pytest.mark.parametrize("kind", ["single", "events"])
def test_spin_until_shutdown_dispatches_timers_and_returns_on_shutdown(kind):
    import rclpy
    from rclpy.context import Context

    from genpolicy_ros.ros.spin import spin_until_shutdown

    context = Context()
    rclpy.init(context=context, domain_id=DOMAIN_ID)
    try:
        node = rclpy.create_node(f"spin_check_{kind}", context=context)
        if kind == "events":
            from rclpy.experimental import EventsExecutor

            executor = EventsExecutor(context=context)
        else:
            from rclpy.executors import SingleThreadedExecutor

            executor = SingleThreadedExecutor(context=context)
        ticks = []

        def tick():
            ticks.append(1)
            if len(ticks) == 5:
                context.try_shutdown()  # as Ctrl-C / an external shutdown would

        node.create_timer(0.02, tick)
        executor.add_node(node)
        watchdog = threading.Timer(10.0, context.try_shutdown)  # a spin that dispatches nothing ends too
        watchdog.start()
        try:
            spin_until_shutdown(executor)
        finally:
            watchdog.cancel()
        assert len(ticks) >= 5 and not context.ok()
    finally:
        rclpy.try_shutdown(context=context)
