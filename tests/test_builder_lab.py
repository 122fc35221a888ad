"""The whole GPU build-host stack on lab hosts presenting as Ubuntu 24.04 and 22.04 (and a Debian 12 one),
against the lab's stand-ins rebuilt from the vendors' sources (tests/labstack.py).

Two full converges keep lab time down: (24.04, ubuntu-drivers, Apptainer's release .deb) and
(22.04, cuda-repo, Apptainer's PPA) cover both driver routes, both Ubuntu releases and both
Apptainer sources; the other two combinations add no code path of their own.
"""
from __future__ import annotations

import io
import json
import threading
from pathlib import Path

import pytest
from rich.console import Console

from provision import cli
from provision.connection import Timeouts
from provision.errors import LabError, PreflightError
from provision.runner import RunOptions
from tests.helpers import PROJECT, write
from tests.labstack import BUILDER_ROLES, CUDA_IMAGE_DIR, DEBIAN_12, UBUNTU_2204, UBUNTU_2404, running_stack

pytestmark = pytest.mark.lab
PLANTED = "nvapi-PLANTED-7f3a9c-never-shown"
BUILDER = ",".join(BUILDER_ROLES)
TOOLKIT = ["nvidia-container-toolkit", "nvidia-container-toolkit-base", "libnvidia-container-tools", "libnvidia-container1"]
CASES = {  # host: (release, driver route, apptainer source)
    "noble1": (UBUNTU_2404, "ubuntu-drivers", "deb"),
    "jammy1": (UBUNTU_2204, "cuda-repo", "ppa"),
}


@pytest.fixture(scope="module")
def stack(lab):
    with running_stack(lab, PLANTED) as made:
        yield made


@pytest.fixture(scope="module", params=list(CASES))
def builder(request, lab, stack, tmp_path_factory):
    """(host, inventory): a GPU host of one case, as the machine was before the tool."""
    host = request.param
    release, route, apptainer = CASES[host]
    stack.make_gpu_host(host, release)
    root = lab.rootfs(host)
    # A daemon.json setting of the user's, and a docker.list with another key from an old install guide.
    write(root / "etc/docker/daemon.json", '{"log-level": "warn"}\n')
    write(root / "etc/apt/keyrings/docker.gpg", stack.repos.apptainer.key_file.read_text())
    write(root / "etc/apt/sources.list.d/docker.list",
          f"deb [signed-by=/etc/apt/keyrings/docker.gpg] {stack.repos.docker.url(stack.repos.base_url)} "
          f"{release.codename} stable\n")
    inventory = stack.inventory(tmp_path_factory.mktemp(host), {host: {
        "nvidia_driver_route": route, "apptainer_source": apptainer}})
    return host, inventory


def run(inventory: Path, host: str, roles: str = BUILDER, report: Path | None = None, **options):
    out = io.StringIO()
    results = cli.provision(inventory, host, None, roles, RunOptions(**options), str(report) if report else None,
                            Console(file=out, width=200), PROJECT / "roles")
    return results[host], out.getvalue()


def installed(lab, host: str) -> set[str]:
    listing = lab.exec(host, "dpkg-query -W -f='${db:Status-Abbrev}|${Package}\\n'").stdout.splitlines()
    # Installed, whether wanted (ii) or held (hi): the roles hold the driver and toolkit packages.
    return {line.split("|")[1] for line in listing if line[:2] in ("ii", "hi")}


def test_a_kernel_without_prebuilt_modules_stops_the_ubuntu_drivers_route_before_installing(lab, stack, tmp_path):
    host = "lowlat1"
    stack.make_gpu_host(host, UBUNTU_2404, flavour="lowlatency")
    before = installed(lab, host)
    inventory = stack.inventory(tmp_path, {host: {}}, roles=["base", "nvidia_driver"])
    result, console = run(inventory, host, roles="nvidia_driver")
    assert result.status == "failed"
    failed = [s for s in result.steps if s.status == "failed"]
    assert [s.task for s in failed] == ["Check that Ubuntu has prebuilt NVIDIA modules for the running kernel"]
    message = [line for line in failed[0].log if line.strip()]
    assert message == [
        "no prebuilt NVIDIA modules for the running kernel 6.8.0-87-lowlatency in the Ubuntu archive "
        "(linux-modules-nvidia-580-server-6.8.0-87-lowlatency): boot a kernel that has them (linux-generic, "
        "or the HWE kernel linux-generic-hwe-24.04) or set nvidia_driver_route: cuda-repo"], console
    assert installed(lab, host) == before, "nothing installed"


def test_a_debian_host_gets_docker_from_linux_debian_and_ubuntu_only_sources_are_refused(lab, stack, tmp_path):
    host = "deb12"
    stack.make_gpu_host(host, DEBIAN_12)
    inventory = stack.inventory(tmp_path, {host: {"roles": BUILDER_ROLES, "nvidia_container_toolkit_cdi": False}},
                                roles=BUILDER_ROLES)
    with pytest.raises(PreflightError, match="nvidia_driver_route ubuntu-drivers cannot work on Debian 12.*"
                                             "set nvidia_driver_route: cuda-repo"):
        cli.preflight(inventory, host, {}, False, Timeouts())
    with pytest.raises(PreflightError, match="apptainer_source ppa cannot work on Debian 12.*set apptainer_source: deb"):
        cli.preflight(inventory, host, {"nvidia_driver_route": "cuda-repo"}, False, Timeouts())
    facts, decision = cli.preflight(inventory, host, {"nvidia_driver_route": "cuda-repo", "apptainer_source": "deb"},
                                    False, Timeouts())
    assert decision.driver_route.value == "cuda-repo"
    roles = ["base", "docker_ce", "nvidia_container_toolkit"]
    inventory = stack.inventory(tmp_path / "run", {host: {"nvidia_container_toolkit_cdi": False}}, roles=roles)
    result, console = run(inventory, host, roles=",".join(roles))
    assert result.status == "changed", result.error + console
    sources = lab.exec(host, "cat /etc/apt/sources.list.d/docker.sources").stdout.splitlines()
    assert "Suites: bookworm" in sources
    assert any(line.startswith("URIs: ") and line.endswith("/download.docker.com/linux/debian") for line in sources)
    assert lab.exec(host, "systemctl is-active docker").stdout.strip() == "active"
    assert {"docker-ce", "containerd.io", *TOOLKIT} <= installed(lab, host)


def test_builder_stack_converges_rebooting_once_then_changes_nothing(lab, builder, tmp_path):
    host, inventory = builder
    release, route, apptainer = CASES[host]
    sh = lambda command: lab.exec(host, command).stdout  # noqa: E731
    seen_processes: list[str] = []
    done = threading.Event()

    def watch_process_list():
        while not done.is_set():
            try:
                seen_processes.append(lab.exec(host, "cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\000' ' '",
                                               check=False).stdout)
            except LabError:  # the host is between two boots (the run reboots it): nothing runs to be seen
                pass
            done.wait(0.3)

    watcher = threading.Thread(target=watch_process_list)
    watcher.start()
    boot_before = sh("cat /proc/sys/kernel/random/boot_id")
    report = tmp_path / "report.json"
    try:
        result, console = run(inventory, host, report=report)
    finally:
        done.set()
        watcher.join()
    assert result.status == "changed", result.error + console
    # One reboot, decided by what is loaded (no driver package writes /var/run/reboot-required).
    assert result.reboots == 1 and sh("cat /proc/sys/kernel/random/boot_id") != boot_before
    assert sh("test -e /var/run/reboot-required || echo absent").strip() == "absent"
    assert "580.95.05" in sh("cat /proc/driver/nvidia/version")
    assert sh("readlink /sys/bus/pci/devices/0000:00:1e.0/driver").strip().endswith("/nvidia")
    assert "Tesla V100-SXM2-16GB" in sh("nvidia-smi")
    assert sh("nvidia-smi --query-gpu=persistence_mode --format=csv,noheader").strip() == "Enabled"
    packages = installed(lab, host)
    if route == "ubuntu-drivers":
        # What --gpgpu installs: headless, no DKMS, no Xorg; the prebuilt modules of the running kernel.
        assert {"nvidia-headless-no-dkms-580-server", "linux-modules-nvidia-580-server-6.8.0-87-generic",
                "nvidia-utils-580-server"} <= packages
        assert not packages & {"nvidia-driver-580-server", "nvidia-dkms-580-server", "dkms",
                               "xserver-xorg-video-nvidia-580-server", "xserver-xorg-core"}
        assert set(sh("apt-mark showhold").split()) >= {"nvidia-headless-no-dkms-580-server", "nvidia-utils-580-server"}
    else:
        assert {"cuda-drivers", "nvidia-driver-pinning-580"} <= packages
        assert "cuda-drivers" in sh("apt-mark showhold").split()
        assert f"/{release.cuda_folder}/x86_64" in sh("cat /etc/apt/sources.list.d/cuda.list")
    assert result.reconnects == 1, ("the docker group arrived, and the run went on over a new login",
                                    [(s.task, s.status) for s in result.steps if s.role == "docker_ce"])
    assert sh("systemctl is-active docker").strip() == "active"
    docker_sources = sh("cat /etc/apt/sources.list.d/docker.sources").splitlines()
    assert f"Suites: {release.codename}" in docker_sources
    assert any(line.startswith("URIs: ") and line.endswith("/download.docker.com/linux/ubuntu") for line in docker_sources)
    assert "containerd.io" in packages and not packages & {"containerd", "runc"}
    daemon = json.loads(sh("cat /etc/docker/daemon.json"))
    assert daemon["log-level"] == "warn", "the user's own setting survives"
    assert daemon["runtimes"]["nvidia"]["path"] == "nvidia-container-runtime"
    assert daemon["storage-driver"] == "vfs"
    versions = sh("dpkg-query -W -f='${Version}\\n' " + " ".join(TOOLKIT)).split()
    assert versions == ["1.20.0-1"] * 4
    assert set(sh("apt-mark showhold").split()) >= set(TOOLKIT)
    assert "nvidia.com/gpu=all" in sh("nvidia-ctk cdi list")
    # Apptainer's AppArmor profile lets the starter create user namespaces (24.04 with the release
    # .deb, whose own profile is a placeholder); 22.04 does not restrict them and keeps the package's.
    profile = sh("cat /etc/apparmor.d/apptainer")
    assert ("  userns," in profile) == (release is UBUNTU_2404), profile
    assert "docker" in sh("id -nG ubuntu").split()
    for path in ("/home/ubuntu/.docker/config.json", "/home/ubuntu/.apptainer/docker-config.json"):
        assert sh(f"stat -c %a {path}").strip() == "600"
    assert "tmux" in packages
    assert "10.200.0.1:5000" in sh("cat /home/ubuntu/.docker/config.json")
    sources = set(sh("ls /etc/apt/sources.list.d/").split())
    assert {"docker.sources", "nvidia-container-toolkit.list"} <= sources
    assert ("apptainer.sources" in sources) == (apptainer == "ppa")
    assert "docker.list" not in sources and "docker.list.disabled-by-provision" in sources
    assert "signed-by=/etc/apt/keyrings/docker.gpg" in sh("cat /etc/apt/sources.list.d/docker.list.disabled-by-provision"), \
        "the old guide's source was renamed, not deleted"
    verify = {s.task: s for s in result.steps if s.role == "verify"}
    assert verify["nvidia-smi sees the GPUs"].status == "ok"
    assert "Tesla V100-SXM2-16GB" in verify["nvidia-smi sees the GPUs"].detail
    assert verify["Apptainer runs a container with --nv"].detail.startswith("GPU 0: Tesla V100-SXM2-16GB")
    # The framework recipes' GPU entrypoint in a container: with --nv (the stand-in GPU bound in) it
    # lists the GPU, without it says to pass --nv; the command runs either way.
    lab.exec(host, "cat > /tmp/gpu-entrypoint.sh", input=(PROJECT / "provision" / "gpu-entrypoint.sh").read_bytes())
    with_gpus = lab.exec(host, f"apptainer exec --nv {CUDA_IMAGE_DIR} sh /tmp/gpu-entrypoint.sh echo ran")
    assert with_gpus.stdout == "ran\n" and "gpu-check: GPU 0: Tesla V100-SXM2-16GB" in with_gpus.stderr, with_gpus
    without = lab.exec(host, f"apptainer exec {CUDA_IMAGE_DIR} sh /tmp/gpu-entrypoint.sh echo ran")
    assert without.stdout == "ran\n" and "pass --nv to apptainer" in without.stderr, without
    assert PLANTED not in console and PLANTED not in report.read_text()
    assert seen_processes and not any(PLANTED in snapshot for snapshot in seen_processes)

    second, _ = run(inventory, host)
    assert (second.status, second.changed, second.reboots) == ("ok", 0, 0), [
        (s.task, s.status) for s in second.steps if s.status != "ok"]
    checked, _ = run(inventory, host, check=True)
    assert checked.changed == 0, [(s.task, s.status) for s in checked.steps if s.status == "would-change"]
