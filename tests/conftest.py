"""Shared fixtures: the lab of real test hosts on this machine (root only), and SSH into them."""

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from provision.lab.lab import Lab
from provision.lab.packages import ensure_packages

LAB_HOSTS = ["lab1", "lab2", "lab3"]

SshRunner = Callable[..., subprocess.CompletedProcess]


def pytest_addoption(parser):
    parser.addoption("--arm64", action="store_true",
                     help="also run the arm64 lab host tests (qemu-user emulation: about 15 minutes from a fresh machine)")


def pytest_configure(config):
    config.addinivalue_line("markers", "lab: needs root and builds real lab hosts on this machine")


def pytest_collection_modifyitems(config, items):
    """Under mutmut (scripts/mutation.sh) only the unit tests run: lab tests are far too slow per mutant.
    The arm64 lab host runs only with --arm64: emulated, it would more than double the suite's time."""
    if os.environ.get("MUTANT_UNDER_TEST"):
        items[:] = [item for item in items if item.get_closest_marker("lab") is None]
    if not config.getoption("--arm64"):
        skip = pytest.mark.skip(reason="an arm64 lab host under emulation (minutes): run with --arm64")
        for item in items:
            if item.get_closest_marker("arm64"):
                item.add_marker(skip)


@pytest.fixture(scope="session")
def lab() -> Lab:
    """The lab with LAB_HOSTS up; torn down before (after a crashed run) and after the session.

    Tests that need hosts of their own call lab.up([...]) with their own names.
    """
    if os.geteuid() != 0:
        pytest.skip("the lab needs root: it makes network namespaces, mounts and a bridge")
    ensure_packages()
    session_lab = Lab()
    session_lab.down()
    try:
        session_lab.up(LAB_HOSTS)
        yield session_lab
    finally:
        session_lab.down()


@pytest.fixture(scope="session")
def lab_hosts(lab) -> list[str]:
    """The names of the hosts the `lab` fixture brings up for the whole session."""
    return list(LAB_HOSTS)


@pytest.fixture(scope="session")
def lab_ssh(lab) -> SshRunner:
    """ssh(host, command, user="root", known_hosts=None): the OpenSSH client with the lab key.

    Host keys are checked strictly against the lab's known_hosts (or the file given).
    """
    def ssh(host: str, command: str, user: str = "root", known_hosts: Path | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess:
        argv = ["ssh", "-i", str(lab.client_key), "-o", "IdentitiesOnly=yes",
                "-o", f"UserKnownHostsFile={known_hosts or lab.known_hosts_path}",
                "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
                "-o", "ConnectTimeout=3", f"{user}@{lab.host(host).address}", command]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    return ssh
