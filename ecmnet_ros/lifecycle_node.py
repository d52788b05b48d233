"""`ecmnet_segmentation_lifecycle`: the segmentation node as a managed (lifecycle) node, for
systems that bring perception up through transitions (Nav2's lifecycle_manager, launch_ros'
LifecycleNode, `ros2 lifecycle set`).

    configure   read parameters, load the checkpoint, warm the engine up (slow part done here)
    activate    create the topics (LabelInfo is published now), start the inference worker
    deactivate  stop the worker and remove every topic; the engine stays loaded
    cleanup     drop the engine and free its memory (CUDA cache included)
    shutdown    all of the above from any state; the process then exits with status 0

Start-up parameters (weights, device, topics, ...) can be changed while unconfigured and apply at
the next configure. A configure that fails (bad parameter, missing checkpoint) logs the reason and
leaves the node unconfigured, so it can be fixed and configured again.

Run: ecmnet_segmentation_lifecycle --ros-args --params-file config/segment.yaml
     ros2 lifecycle set /ecmnet_segmentation configure   (then activate)
     ... -p autostart:=true                               (the node configures and activates itself)
"""
from __future__ import annotations

import sys

from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from .params import ConfigError
from .segmentation_node import NODE_NAME, SegmentationNode, run_node
from .shutdown import interruptible


class SegmentationLifecycleNode(SegmentationNode, LifecycleNode):
    MANAGED = True

    def __init__(self, node_name: str = NODE_NAME, **kwargs):
        self.finished = False          # Finalized: run_node stops spinning and the process exits
        super().__init__(node_name, **kwargs)
        self.declare_parameter("autostart", False)

    def autostart(self) -> None:
        """Parameter autostart:=true: configure, then activate, from inside the process (run_node
        calls this before spinning). Why not launch's ChangeState events: launch then waits on the
        node's change_state service in a thread of its own, and a Ctrl-C that lands while such a call
        is open can leave `ros2 launch` hanging after the node has exited (ros2/launch_ros#102; seen
        here once in six CI rounds). Done here, Ctrl-C during the start-up is the node's own start-up
        case, which ends with exit status 0."""
        if not self.get_parameter("autostart").value:
            return
        if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            self.trigger_activate()

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        from ecmnet_core.runtime.checkpoint import CheckpointError

        try:
            with interruptible():               # Ctrl-C during a long model load stops it
                self._configure()
        except (ConfigError, CheckpointError, FileNotFoundError, ValueError) as exc:
            self.get_logger().error(f"configure failed: {exc}")
            self._cleanup()
            return TransitionCallbackReturn.FAILURE
        except Exception as exc:  # noqa: BLE001 - rclpy would swallow it without a word
            self.get_logger().error(f"configure failed: {type(exc).__name__}: {exc}")
            return TransitionCallbackReturn.ERROR
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._activate()
        except ConfigError as exc:               # e.g. an invalid topic name
            self.get_logger().error(f"activate failed: {exc}")
            self._deactivate()
            return TransitionCallbackReturn.FAILURE
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._deactivate()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._cleanup()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self.finished = True
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """An exception in a transition: release everything and go back to Unconfigured."""
        self.get_logger().error(f"error in a transition from {state.label}: releasing the engine")
        self._release()
        return TransitionCallbackReturn.SUCCESS


def main(args=None) -> int:
    return run_node(SegmentationLifecycleNode, args)


if __name__ == "__main__":
    sys.exit(main())
