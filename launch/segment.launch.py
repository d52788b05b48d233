"""Launch the ECMNet segmentation node: config/segment.yaml, then an optional params_file over it,
then the per-launch overrides below.

    ros2 launch ecmnet_ros segment.launch.py weights:=/path/model.pt \
        input_topics:=/cam0/image_raw,/cam1/image_raw/compressed resolution:=360x480 namespace:=perception
    ros2 launch ecmnet_ros segment.launch.py params_file:=my_robot.yaml use_sim_time:=true \
        remappings:=/camera/image_raw:=/front/image_rect
    ros2 launch ecmnet_ros segment.launch.py managed:=true            # lifecycle node, configured + activated
    ros2 launch ecmnet_ros segment.launch.py managed:=true autostart:=false   # stays unconfigured
    ros2 launch launch/segment.launch.py ...    # from a source checkout after `pip install -e .`

Node-parameter arguments left empty keep the value from the YAML files. The executable comes from
the package's lib/ecmnet_ros/ (colcon, or ecmnet-ros-register in a venv); when the package is not
in the ament index, from the console script on PATH. The Fast DDS profile config/fastdds.xml is
applied to the node unless the environment already names one (docs/ros.md).
"""
import os
import re
import shutil

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node

PACKAGE = "ecmnet_ros"
NODE_NAME = "ecmnet_segmentation"
EXECUTABLES = {False: "ecmnet_segmentation", True: "ecmnet_segmentation_lifecycle"}
# share/ecmnet_ros/ when installed (this file is share/ecmnet_ros/launch/...), the checkout otherwise
SHARE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_PARAMS = os.path.join(SHARE, "config", "segment.yaml")
FASTDDS_PROFILE = os.path.join(SHARE, "config", "fastdds.xml")
FASTDDS_ENV = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")   # Fast DDS 3 / 2 names
FASTDDS2_DISTROS = ("foxy", "galactic", "humble", "iron", "jazzy")                  # ship Fast DDS 2.x

# launch argument -> node parameter of the same name (launch-only arguments: LAUNCH_ONLY)
OVERRIDES = ("weights", "backend", "device", "precision", "compile", "resolution", "input_topics",
             "output_prefixes", "publish_overlay", "publish_confidence")
LIST_PARAMETERS = ("input_topics", "output_prefixes")
BOOL_PARAMETERS = ("compile", "publish_overlay", "publish_confidence")
LAUNCH_ONLY = ("params_file", "namespace", "log_level", "use_sim_time", "remappings", "managed", "autostart",
               "fastdds_profile")
TRUE = ("1", "true", "yes", "on")


def _text(context, name: str) -> str:
    return LaunchConfiguration(name).perform(context).strip()


def _flag(context, name: str) -> bool:
    value = _text(context, name).lower()
    if value not in TRUE + ("0", "false", "no", "off"):
        raise ValueError(f"launch argument {name} must be true or false, got {value!r}")
    return value in TRUE


def _executable(managed: bool):
    """(package, executable) for launch_ros: the ament-installed script if there is one, else the
    console script on PATH (a venv with `pip install -e .` only)."""
    name = EXECUTABLES[managed]
    try:
        from ament_index_python.packages import get_package_prefix
        if os.access(os.path.join(get_package_prefix(PACKAGE), "lib", PACKAGE, name), os.X_OK):
            return PACKAGE, name
    except Exception:  # noqa: BLE001 - PackageNotFoundError, or no ament index at all
        pass
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"executable {name} not found: build the workspace (colcon build), or "
                           f"`pip install -e .` (+ `ecmnet-ros-register`) in the active venv")
    return None, path


def _remappings(text: str):
    """'from:=to' rules separated by commas or spaces."""
    rules = []
    for rule in filter(None, re.split(r"[,\s]+", text)):
        src, sep, dst = rule.partition(":=")
        if not sep or not src or not dst:
            raise ValueError(f"launch argument remappings: {rule!r} is not from:=to")
        rules.append((src, dst))
    return rules


def _fastdds_env(context) -> dict:
    """The DDS profile for the node's process: fastdds_profile:=PATH, or :=none for none; by default
    the package's config/fastdds.xml unless the environment already names a profile (or it is absent)."""
    choice = _text(context, "fastdds_profile")
    if choice.lower() == "none":
        return {}
    if choice:
        if not os.path.isfile(choice):
            raise FileNotFoundError(f"launch argument fastdds_profile: no such file {choice!r}")
        path = os.path.abspath(choice)
    else:
        env = getattr(context, "environment", os.environ)
        if any(env.get(k) for k in FASTDDS_ENV) or not os.path.isfile(FASTDDS_PROFILE):
            return {}
        path = FASTDDS_PROFILE
    return {_profile_env_name(): path}


def _profile_env_name() -> str:
    """The one variable this ROS distribution's Fast DDS reads. Setting both makes Fast DDS 3 load
    the file twice and reject every profile in it the second time (XMLPARSER errors)."""
    distro = os.environ.get("ROS_DISTRO", "").strip().lower()
    return FASTDDS_ENV[1] if distro in FASTDDS2_DISTROS else FASTDDS_ENV[0]


def _node(context):
    overrides = {"use_sim_time": _flag(context, "use_sim_time")}
    for name in OVERRIDES:
        value = _text(context, name)
        if not value:
            continue
        if name in LIST_PARAMETERS:
            overrides[name] = [v.strip() for v in value.split(",") if v.strip()]
        elif name in BOOL_PARAMETERS:
            overrides[name] = value.lower() in TRUE
        else:
            overrides[name] = value
    params_file = _text(context, "params_file")
    if params_file and not os.path.isfile(params_file):
        raise FileNotFoundError(f"launch argument params_file: no such file {params_file!r}")
    managed = _flag(context, "managed")
    package, executable = _executable(managed)
    common = dict(
        package=package, executable=executable, name=NODE_NAME, namespace=_text(context, "namespace"),
        output="screen", emulate_tty=True,
        parameters=[DEFAULT_PARAMS] + ([os.path.abspath(params_file)] if params_file else []) + [overrides],
        remappings=_remappings(_text(context, "remappings")),
        ros_arguments=["--log-level", _text(context, "log_level")],
        additional_env=_fastdds_env(context),
    )
    if not managed:
        return [Node(**common)]
    # autostart: the node configures and activates itself (parameter autostart), rather than
    # launch driving it with ChangeState events whose service calls can hang launch on a Ctrl-C
    # during start-up (ros2/launch_ros#102; ecmnet_ros/lifecycle_node.py)
    common["parameters"] = common["parameters"] + [{"autostart": _flag(context, "autostart")}]
    return [LifecycleNode(**common)]


def generate_launch_description():
    args = [
        DeclareLaunchArgument("params_file", default_value="",
                              description="parameter YAML (ros__parameters format) applied over config/segment.yaml"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
        DeclareLaunchArgument("log_level", default_value="info", description="debug, info, warn, error"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="true: the node's clock follows /clock (ros2 bag play --clock)"),
        DeclareLaunchArgument("remappings", default_value="",
                              description="extra remapping rules from:=to, comma-separated "
                                          "(e.g. /camera/image_raw:=/front/image_rect)"),
        DeclareLaunchArgument("managed", default_value="false",
                              description="true: start the lifecycle node ecmnet_segmentation_lifecycle"),
        DeclareLaunchArgument("autostart", default_value="true",
                              description="with managed:=true, configure and activate it at start"),
        DeclareLaunchArgument("fastdds_profile", default_value="",
                              description="Fast DDS XML profile for the node; empty: config/fastdds.xml unless "
                                          "FASTDDS_DEFAULT_PROFILES_FILE is set; none: no profile"),
        DeclareLaunchArgument("weights", default_value="", description="checkpoint .pt (empty: from the YAML)"),
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
