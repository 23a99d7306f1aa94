"""The policy node's services (std_srvs/Trigger): ``~/pause``, ``~/resume``,
``~/start_from_measured`` — a mixin of :class:`~genpolicy_ros.ros.policy_node.PolicyNode`
(it reads the node's engine, output and lifecycle state)."""
from __future__ import annotations

from std_srvs.srv import Trigger


class NodeServices:
    """Service handlers; the node calls :meth:`_create_services` at configure."""

    def _create_services(self, group) -> list:
        return [
            self.create_service(Trigger, "~/pause", self._on_pause, callback_group=group),
            self.create_service(Trigger, "~/resume", self._on_resume, callback_group=group),
            self.create_service(Trigger, "~/start_from_measured", self._on_start_from_measured,
                                callback_group=group),
        ]

    def _on_pause(self, request, response):
        if self._engine is None or not self._active:
            response.success, response.message = False, f"node is {self._state_label}, not active"
            return response
        self._engine.pause()
        response.success, response.message = True, "paused: holding until ~/resume"
        self.get_logger().info("paused by service call")
        return response

    def _on_resume(self, request, response):
        if self._engine is None or not self._active:
            response.success, response.message = False, f"node is {self._state_label}, not active"
            return response
        if not self._engine.safety.paused:
            response.success, response.message = False, "not paused"
            return response
        self._engine.resume()
        response.success = True
        response.message = "resuming at the next fresh joint state"
        self.get_logger().info("resume requested by service call")
        return response

    def _on_start_from_measured(self, request, response):
        """Forget the last command so the next first action starts from the measured
        position — after the robot was moved while no command was streaming (e.g. by hand,
        another controller, a simulator reset). Refused while commands are being published."""
        if self._engine is None:
            response.success, response.message = False, f"node is {self._state_label}: configure it first"
            return response
        if self._active and self._output.started:
            response.success = False
            response.message = ("commands are streaming: deactivate first (starting from the measured position "
                                "mid-stream would make the command jump)")
            return response
        self._engine.start_from_measured()
        response.success = True
        response.message = "the next first action starts from a confirmed measured position"
        self.get_logger().info("start_from_measured: the last command is forgotten")
        return response
