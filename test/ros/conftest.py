"""Fixtures shared by the ROS tests: one rclpy context (RosHarness) per test module.

Module scope because DDS discovery is the slow part; RosHarness puts every process of a test
session on one random ROS_DOMAIN_ID, so parallel sessions on one host do not see each other."""
import pytest


@pytest.fixture(scope="module")
def harness():
    pytest.importorskip("rclpy")
    from ros_harness import RosHarness

    h = RosHarness()
    yield h
    h.close()
