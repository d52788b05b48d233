"""ament_python package `ecmnet_ros`: installs ecmnet_core, ecmnet_ros and training.

Works both under colcon (ROS 2 workspace; setup.cfg sends the console scripts to
lib/ecmnet_ros/, where `ros2 run` and launch look) and with plain `pip install -e .` (scripts on
the venv's bin/; `ecmnet-ros-register` then makes the venv an ament prefix for ros2 launch/run).
"""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "ecmnet_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=["ecmnet_core", "ecmnet_core.*", "ecmnet_ros", "ecmnet_ros.*",
                                    "training", "training.*"]),
    package_data={"ecmnet_core": ["weights/*.pt"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", sorted(glob("config/*.yaml") + glob("config/*.xml"))),
    ],
    python_requires=">=3.10",
    # pillow: image headers are read (size cap) before OpenCV decodes anything
    # opencv: headless, as scripts/setup_env.sh installs it (a colcon build uses package.xml's python3-opencv)
    install_requires=["numpy", "pyyaml", "torch>=2.1", "pillow", "opencv-python-headless>=4.5"],
    extras_require={
        "train": ["tensorboard", "tqdm", "matplotlib"],
        "bag": ["rosbags>=0.10", "matplotlib"],
        "export": ["onnx", "onnxruntime"],
        "test": ["pytest"],
    },
    zip_safe=False,
    maintainer="ecmnet team",
    maintainer_email="ecmnet@example.com",
    description="ECMNet (CNN + Mamba) semantic segmentation for ROS 2",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "ecmnet-predict = ecmnet_core.cli.predict:main",
            "ecmnet-flops = ecmnet_core.cli.flops:main",
            "ecmnet-export = ecmnet_core.cli.export:main",
            "ecmnet-train = training.train:main",
            "ecmnet-eval = training.evaluate:main",
            "ecmnet-pack-data = training.pack:main",
            "ecmnet-segment = ecmnet_ros.segmentation_node:main",
            "ecmnet_segmentation = ecmnet_ros.segmentation_node:main",
            "ecmnet_segmentation_lifecycle = ecmnet_ros.lifecycle_node:main",
            "ecmnet-ros-register = ecmnet_ros.ament_register:main",
            "ecmnet-bag-eval = ecmnet_ros.bag_eval:main",
            "ecmnet-make-bag = ecmnet_ros.make_bag:main",
        ],
    },
)
