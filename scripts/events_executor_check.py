"""Does rclpy's experimental EventsExecutor dispatch callbacks on this installation?

    python scripts/events_executor_check.py [--executor events|single] [--domain-id 179]

A subscriber node (one JointState subscription, one 10 Hz timer, a publisher driven from
a thread — the policy node's shape) spins in the chosen executor in this process; a second
process publishes JointState at 100 Hz and counts what it receives back. Prints the
callback counts after ~3 s. Measured with the PyPI wheels (rclpy 9.1.2, Fast DDS, 2 cores
under load): the single-threaded executor dispatched 101 joint states and 37 timer ticks; the
EventsExecutor dispatched none (0 joint states, 0 timer ticks; in other runs 1 joint state)
while its publisher still delivered (287 commands received by the other process) — which is
why the policy node under `genpolicy node --executor events` never sees a joint state and
never commands (session 2's observation).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time


def publisher_side(domain_id: int, seconds: float) -> None:
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray

    rclpy.init(domain_id=domain_id)
    node = rclpy.create_node("events_check_publisher")
    pub = node.create_publisher(JointState, "joint_states", qos_profile_sensor_data)
    got = [0]
    node.create_subscription(Float64MultiArray, "commands", lambda m: got.__setitem__(0, got[0] + 1), 10)
    end = time.time() + seconds
    while time.time() < end:
        pub.publish(JointState(name=["a"], position=[0.0]))
        rclpy.spin_once(node, timeout_sec=0.01)
    print(f"publisher process received {got[0]} commands", flush=True)
    os._exit(0)


def subscriber_side(executor_kind: str, domain_id: int, spin: str = "spin") -> None:
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray

    rclpy.init(domain_id=domain_id)
    node = rclpy.create_node("events_check_subscriber")
    got = {"joint_states": 0, "timer": 0}
    node.create_subscription(JointState, "joint_states",
                             lambda m: got.__setitem__("joint_states", got["joint_states"] + 1),
                             qos_profile_sensor_data)
    node.create_timer(0.1, lambda: got.__setitem__("timer", got["timer"] + 1))
    pub = node.create_publisher(Float64MultiArray, "commands", 10)
    if executor_kind == "events":
        from rclpy.experimental import EventsExecutor

        executor = EventsExecutor()
    else:
        from rclpy.executors import SingleThreadedExecutor

        executor = SingleThreadedExecutor()
    executor.add_node(node)

    def work():
        for _ in range(300):
            pub.publish(Float64MultiArray(data=[1.0]))
            time.sleep(0.01)
        print(f"{executor_kind} executor dispatched: {got}", flush=True)
        os._exit(0)

    threading.Thread(target=work, daemon=True).start()
    if spin == "spin_once":
        while True:
            executor.spin_once(timeout_sec=0.1)
    executor.spin()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executor", choices=("events", "single"), default="events")
    parser.add_argument("--domain-id", type=int, default=179)
    parser.add_argument("--spin", choices=("spin", "spin_once"), default="spin",
                        help="executor.spin() or a loop of executor.spin_once(timeout_sec=0.1)")
    parser.add_argument("--role", choices=("both", "publisher"), default="both", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "publisher":
        publisher_side(args.domain_id, 4.5)
        return 0
    other = subprocess.Popen([sys.executable, __file__, "--role", "publisher", "--domain-id", str(args.domain_id)])
    time.sleep(0.5)
    try:
        subscriber_side(args.executor, args.domain_id, args.spin)
    finally:
        other.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
