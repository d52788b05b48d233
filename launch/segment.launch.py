"""Launch the ecmnet_segmentation node with config/segment.yaml plus per-launch overrides.

    ros2 launch ecmnet_ros segment.launch.py weights:=/path/model.pt \
        input_topics:=/cam0/image_raw,/cam1/image_raw/compressed resolution:=360x480 namespace:=perception

Arguments left empty keep the value from params_file (default: the package's config/segment.yaml).
The same node and YAML run without launch: ecmnet-segment --ros-args --params-file config/segment.yaml
"""
import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

# launch argument -> node parameter (launch-only arguments: namespace, params_file, log_level)
OVERRIDES = ("weights", "backend", "device", "precision", "compile", "resolution", "input_topics",
             "output_prefixes", "publish_overlay", "publish_confidence")
LIST_PARAMETERS = ("input_topics", "output_prefixes")
BOOL_PARAMETERS = ("compile", "publish_overlay", "publish_confidence")


def _default_params_file():
    try:
        from ament_index_python.packages import get_package_share_directory
        return os.path.join(get_package_share_directory("ecmnet_ros"), "config", "segment.yaml")
    except Exception:  # noqa: BLE001 - running from a source checkout
        return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "config", "segment.yaml")


def _node(context):
    overrides = {}
    for name in OVERRIDES:
        value = LaunchConfiguration(name).perform(context).strip()
        if not value:
            continue
        if name in LIST_PARAMETERS:
            overrides[name] = [v.strip() for v in value.split(",") if v.strip()]
        elif name in BOOL_PARAMETERS:
            overrides[name] = value.lower() in ("1", "true", "yes", "on")
        else:
            overrides[name] = value
    params_file = LaunchConfiguration("params_file").perform(context)
    return [Node(
        package="ecmnet_ros", executable="ecmnet_segmentation", name="ecmnet_segmentation",
        namespace=LaunchConfiguration("namespace"), output="screen", emulate_tty=True,
        parameters=[params_file, overrides],
        arguments=["--ros-args", "--log-level", LaunchConfiguration("log_level").perform(context)],
    )]


def generate_launch_description():
    args = [
        DeclareLaunchArgument("params_file", default_value=_default_params_file(),
                              description="parameter YAML (ros__parameters format)"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
        DeclareLaunchArgument("log_level", default_value="info", description="debug, info, warn, error"),
        DeclareLaunchArgument("weights", default_value="", description="checkpoint .pt (empty: from params_file)"),
        DeclareLaunchArgument("backend", default_value="", description="SS2D backend: auto, reference, cuda, mamba"),
        DeclareLaunchArgument("device", default_value="", description="auto, cpu, cuda, cuda:N"),
        DeclareLaunchArgument("precision", default_value="", description="fp32, fp16, bf16"),
        DeclareLaunchArgument("compile", default_value="", description="true/false: torch.compile on CUDA"),
        DeclareLaunchArgument("resolution", default_value="", description="model, native or HxW (e.g. 360x480)"),
        DeclareLaunchArgument("input_topics", default_value="",
                              description="comma-separated camera topics (/compressed suffix = CompressedImage)"),
        DeclareLaunchArgument("output_prefixes", default_value="",
                              description="comma-separated output namespaces, one per input topic"),
        DeclareLaunchArgument("publish_overlay", default_value="", description="true/false"),
        DeclareLaunchArgument("publish_confidence", default_value="", description="true/false"),
    ]
    return LaunchDescription(args + [OpaqueFunction(function=_node)])
