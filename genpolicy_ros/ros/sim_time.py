"""The command loop on simulated time: with ``use_sim_time`` the policy node ticks once per
control period of ``/clock`` time, however fast or slow the simulator runs (a simulator that
renders cameras on a CPU may run at a real-time factor well below 1; Gazebo does the same).

The wall clock would be wrong twice over: at a real-time factor of 0.2 a 10 ms wall tick is
2 ms of simulated time, so the plan would be sampled five times per row and the safety
filter — which allows ``max_velocity · period`` per tick — would let the arm move five
times faster in simulated time than its limit.

How: a jump callback on the node's ROS clock (rclpy calls it after every forward step of
``/clock``, once the clock shows the new time) bumps a counter under a condition variable;
the :class:`~genpolicy_ros.runtime.rate_loop.RateLoop` gets the ROS clock as its clock and a
``sleep`` that waits for the next ``/clock`` step (at most ``max_wait_s`` of wall time, so a
stopped ``/clock`` never hangs the loop: the engine's steady-clock watchdog then holds).
Deadlines, lateness and missed ticks are all in simulated seconds.
"""
from __future__ import annotations

import threading

from rclpy.clock import JumpThreshold
from rclpy.duration import Duration


class SimTimeLoop:
    """Wakes the command loop at every ``/clock`` step; see the module docstring."""

    def __init__(self, node, max_wait_s: float = 0.1) -> None:
        self._node = node
        self._clock = node.get_clock()
        self._max_wait_s = float(max_wait_s)
        self._cond = threading.Condition()
        self._steps = 0
        threshold = JumpThreshold(min_forward=Duration(nanoseconds=1), min_backward=None, on_clock_change=True)
        self._handle = self._clock.create_jump_callback(threshold, post_callback=self._on_jump)

    def _on_jump(self, jump) -> None:
        with self._cond:
            self._steps += 1
            self._cond.notify_all()

    def now(self) -> float:
        """Seconds of ROS (simulated) time."""
        return self._clock.now().nanoseconds * 1e-9

    def sleep(self, seconds: float) -> None:
        """Wait for the next ``/clock`` step (or ``max_wait_s`` of wall time); ``seconds``
        (simulated) only says that a wait is needed — the loop re-checks its deadline."""
        with self._cond:
            seen = self._steps
            self._cond.wait_for(lambda: self._steps != seen, timeout=self._max_wait_s)

    def loop_timing(self) -> dict:
        """``RateLoop`` keyword arguments: the simulated clock and the /clock-driven sleep."""
        return {"clock": self.now, "sleep": self.sleep}
