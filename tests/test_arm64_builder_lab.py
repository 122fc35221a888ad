"""The GPU build-host stack on an arm64 lab host, as on an AWS g5g (Graviton2 with a T4G): a Debian arm64
root filesystem run under qemu-user, presenting as Ubuntu 22.04, against arm64 stand-in repositories.

Route: NVIDIA's CUDA repository (its sbsa folder) and Apptainer's PPA (the release .deb is amd64 only).
Everything in the host runs emulated, so this one converge takes minutes (marker arm64).
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from provision import cli
from provision.connection import Timeouts
from provision.errors import PreflightError
from provision.runner import RunOptions
from tests.helpers import PROJECT
from tests.labstack import BUILDER_ROLES, T4G, UBUNTU_2204, running_stack

pytestmark = [pytest.mark.lab, pytest.mark.arm64]
PLANTED = "nvapi-PLANTED-arm64-never-shown"
HOST = "graviton1"
# The packages of each role that carry programs (the rest are metapackages or keyrings).
ARCH_PACKAGES = ["nvidia-open", "docker-ce", "containerd.io", "nvidia-container-toolkit",
                 "libnvidia-container1", "apptainer"]


@pytest.fixture(scope="module")
def stack(lab):
    with running_stack(lab, PLANTED, arch="arm64") as made:
        yield made


def run(inventory: Path, roles: str, **options):
    out = io.StringIO()
    results = cli.provision(inventory, HOST, None, roles, RunOptions(**options), None,
                            Console(file=out, width=200), PROJECT / "roles")
    return results[HOST], out.getvalue()


def test_builder_stack_converges_on_an_arm64_host_then_changes_nothing(lab, stack, tmp_path):
    stack.make_gpu_host(HOST, UBUNTU_2204)
    sh = lambda command: lab.exec(HOST, command).stdout  # noqa: E731
    assert (sh("uname -m"), sh("dpkg --print-architecture")) == ("aarch64\n", "arm64\n"), "an emulated arm64 host"
    # Lab gap: qemu-user does not emulate netfilter's netlink, so the emulated iptables fails ("Failed to
    # initialize nft: Protocol not supported") and dockerd with it. The host comes with a daemon.json that
    # turns docker's iptables rules off, as the machine's own setting (the role merges into it, keeping it);
    # without it, docker's first start at install fails and its restarts use up the unit's StartLimitBurst.
    lab.exec(HOST, "mkdir -p /etc/docker && cat > /etc/docker/daemon.json",
             input=b'{"iptables": false, "ip6tables": false}\n')
    # Branch 580 pinned, as a production fleet does: the stand-in CUDA repository carries no other
    # (left to itself, preflight picks the newest long-term branch that drives a Turing T4G).
    inventory = stack.inventory(tmp_path, {HOST: {"nvidia_driver_route": "cuda-repo", "apptainer_source": "ppa",
                                                  "nvidia_driver_branch": "580", "roles": BUILDER_ROLES}})

    facts, decision = cli.preflight(inventory, HOST, {}, False, Timeouts())
    assert facts["arch"] == "arm64"
    assert [gpu.model for gpu in decision.gpus] == ["NVIDIA T4G"]
    assert (decision.driver_branch.value, decision.driver_flavour.value) == ("580", "open"), "Turing: the open modules"
    with pytest.raises(PreflightError, match="Apptainer's release .deb is built for amd64 only.*ppa"):
        cli.preflight(inventory, HOST, {"apptainer_source": "deb"}, False, Timeouts())

    result, console = run(inventory, ",".join(BUILDER_ROLES))
    assert result.status == "changed", result.error + console
    assert result.reboots == 1
    assert "NVIDIA UNIX Open Kernel Module for aarch64  580." in sh("cat /proc/driver/nvidia/version")
    assert sh(f"readlink /sys/bus/pci/devices/{T4G[0]}/driver").strip().endswith("/nvidia")
    assert "NVIDIA T4G" in sh("nvidia-smi")
    # Every package with programs in it is the arm64 build, from repositories at arm64 paths.
    arches = dict(line.split() for line in sh(
        "dpkg-query -W -f='${Package} ${Architecture}\\n' " + " ".join(ARCH_PACKAGES)).splitlines())
    assert arches == dict.fromkeys(ARCH_PACKAGES, "arm64")
    assert "/ubuntu2204/sbsa" in sh("cat /etc/apt/sources.list.d/cuda.list")
    # NVIDIA's list names $(ARCH), which apt expands: the index it fetched is the arm64 one.
    assert "/stable/deb/$(ARCH) /" in sh("cat /etc/apt/sources.list.d/nvidia-container-toolkit.list")
    assert "libnvidia-container_stable_deb_arm64_Packages" in sh("ls /var/lib/apt/lists")
    assert "Architectures: arm64" in sh("cat /etc/apt/sources.list.d/docker.sources").splitlines()
    assert "Architectures: arm64" in sh("cat /etc/apt/sources.list.d/apptainer.sources").splitlines()
    assert sh("systemctl is-active docker").strip() == "active"
    assert sh("docker info --format '{{.Architecture}}'").strip() == "aarch64"
    daemon = json.loads(sh("cat /etc/docker/daemon.json"))
    assert daemon["iptables"] is False and daemon["runtimes"]["nvidia"]["path"] == "nvidia-container-runtime"
    assert "nvidia.com/gpu=all" in sh("nvidia-ctk cdi list")
    verify = {s.task: s for s in result.steps if s.role == "verify"}
    assert "NVIDIA T4G" in verify["nvidia-smi sees the GPUs"].detail
    assert verify["Apptainer runs a container with --nv"].detail.startswith("GPU 0: NVIDIA T4G")
    assert PLANTED not in console

    second, _ = run(inventory, ",".join(BUILDER_ROLES))
    assert (second.status, second.changed, second.reboots) == ("ok", 0, 0), [
        (s.task, s.status) for s in second.steps if s.status != "ok"]
