"""Launch the genpolicy policy node (a lifecycle node) — Humble .. Kilted.

    ros2 launch genpolicy_ros policy.launch.py model_path:=/path/to/model \
        output_mode:=forward_command namespace:=robot use_sim_time:=false autostart:=true

The argument logic lives in ``genpolicy_ros.ros.launch_args`` (pure, unit-tested); this
file only wires it to launch / launch_ros. With ``autostart`` the node is configured at
start and activated once configure has brought it to ``inactive`` (a later deactivate is
left alone).
"""
from launch.actions import DeclareLaunchArgument, EmitEvent, OpaqueFunction, RegisterEventHandler
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from lifecycle_msgs.msg import Transition

from genpolicy_ros.ros import launch_args
from launch import LaunchDescription


def _change_state(node, transition_id):
    return EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                       transition_id=transition_id))


def _launch_node(context, *args, **kwargs):
    values = {arg.name: LaunchConfiguration(arg.name).perform(context)
              for arg in launch_args.declared_arguments()}
    spec = launch_args.resolve(values)
    node = LifecycleNode(
        package=spec.package,
        executable=spec.executable,
        name=spec.name,
        namespace=spec.namespace,
        parameters=spec.parameters,
        arguments=list(spec.arguments),
        output="screen",
    )
    actions = [node]
    if spec.autostart:
        actions.append(RegisterEventHandler(OnStateTransition(
            target_lifecycle_node=node,
            start_state="configuring",
            goal_state="inactive",
            entities=[_change_state(node, Transition.TRANSITION_ACTIVATE)],
        )))
        actions.append(_change_state(node, Transition.TRANSITION_CONFIGURE))
    return actions


def generate_launch_description():
    declarations = [
        DeclareLaunchArgument(arg.name, default_value=arg.default, description=arg.description,
                              **({"choices": list(arg.choices)} if arg.choices else {}))
        for arg in launch_args.declared_arguments()
    ]
    return LaunchDescription(declarations + [OpaqueFunction(function=_launch_node)])
