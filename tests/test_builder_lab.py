"""The whole GPU build-host stack on a lab host with systemd, against the lab's stand-in vendor repos.

Stand-ins (tests/standins/): Docker's, NVIDIA's and Apptainer's repositories serve packages of the
vendors' names; a planted PCI tree plays a Tesla V100; the lab registry plays nvcr.io, its login
the NGC key. The roles see only their URLs differ.
"""
from __future__ import annotations

import io
import json
import os
import threading
from pathlib import Path

import pytest
from rich.console import Console

from provision import cli
from provision.runner import RunOptions
from tests.helpers import PROJECT, write
from tests.standins import build_standin_repos, ensure_packages, lab_url, serve

pytestmark = pytest.mark.lab
PLANTED = "nvapi-PLANTED-7f3a9c-never-shown"
HOST = "gpu1"
BUILDER = "base,helper_tools,nvidia_driver,docker_ce,nvidia_container_toolkit,apptainer,ngc_login,verify"
TOOLKIT = ["nvidia-container-toolkit", "nvidia-container-toolkit-base", "libnvidia-container-tools", "libnvidia-container1"]
REPOS_DIR = Path("/var/cache/provision-lab/standin-repos")


@pytest.fixture(scope="module")
def builder(lab, tmp_path_factory, monkeypatch_module):
    ensure_packages()
    repos = build_standin_repos(REPOS_DIR)
    base = repos.base_url
    server = serve(REPOS_DIR)
    registry = lab.registry({"$oauthtoken": PLANTED})
    monkeypatch_module.setenv("NGC_API_KEY", PLANTED)
    lab.up([HOST], systemd=True)
    lab.plant_gpu(HOST, [("0000:00:1e.0", "10de:1db1", "0x030200")])
    root = lab.rootfs(HOST)
    # The machine as it was before the tool: Ubuntu's archive (route A's stand-in) among its
    # sources, a daemon.json setting of the user's, and a docker.list from an old install guide.
    archive_key = "/usr/share/keyrings/lab-ubuntu-archive.asc"
    write(root / archive_key.lstrip("/"), repos.ubuntu_archive.key_file.read_text())
    write(root / "etc/apt/sources.list.d/ubuntu-archive.list", repos.ubuntu_archive.sources[0].one_line(base, archive_key))
    write(root / "etc/docker/daemon.json", '{"log-level": "warn"}\n')
    write(root / "etc/apt/keyrings/docker.gpg", repos.apptainer.key_file.read_text())
    write(root / "etc/apt/sources.list.d/docker.list",
          f"deb [signed-by=/etc/apt/keyrings/docker.gpg] {repos.docker.url(base)} bookworm stable\n")
    lab.stop(HOST)
    lab.start(HOST)
    directory = tmp_path_factory.mktemp("builder") / "hosts"
    variables = {
        "ssh_key": str(lab.client_key),
        "base_apt_proxy": "http://10.200.0.1:3142",
        "base_apt_proxy_direct": ["10.200.0.1"],
        "docker_ce_repo_url": repos.docker.url(base),
        "docker_ce_key_url": repos.docker.key_url(base),
        "docker_ce_daemon_settings": {"storage-driver": "vfs", "insecure-registries": [registry]},
        "nvidia_container_toolkit_repo_url": lab_url("https://nvidia.github.io/libnvidia-container/stable/deb/$(ARCH)", base),
        "nvidia_container_toolkit_key_url": repos.nvidia_container_toolkit.key_url(base),
        "apptainer_ppa_url": repos.apptainer.url(base),
        "apptainer_ppa_key_url": repos.apptainer.key_url(base),
        "nvidia_driver_kernel_headers": False,  # stand-in gap: no headers package for this machine's kernel
        "verify_docker": False,  # stand-in gap: the runtime hook injects no nvidia-smi into containers
        "verify_apptainer": False,
        "ngc_login_registry": registry,
        "ngc_login_api_key": {"secret_env": "NGC_API_KEY"},
    }
    write(directory / "inventory.yml", json.dumps({"all": {"vars": variables, "hosts": {
        HOST: {"ansible_host": lab.host(HOST).address, "ansible_user": "ubuntu"}}}}, indent=2))
    address = lab.host(HOST).address
    (directory / "known_hosts").write_text(
        "".join(l + "\n" for l in lab.known_hosts_path.read_text().splitlines() if address in l.split()[0]))
    yield directory
    server.stop()


@pytest.fixture(scope="module")
def monkeypatch_module():
    patch = pytest.MonkeyPatch()
    yield patch
    patch.undo()


def run(inventory: Path, report: Path | None = None, **options):
    out = io.StringIO()
    results = cli.provision(inventory, HOST, None, BUILDER, RunOptions(**options), str(report) if report else None,
                            Console(file=out, width=200), PROJECT / "roles")
    return results[HOST], out.getvalue()


def sh(lab, command: str) -> str:
    return lab.exec(HOST, command).stdout


def test_builder_stack_converges_rebooting_once_and_never_shows_the_key(lab, builder, tmp_path):
    seen_processes: list[str] = []
    done = threading.Event()

    def watch_process_list():
        while not done.is_set():
            seen_processes.append(lab.exec(HOST, "cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\000' ' '", check=False).stdout)
            done.wait(0.3)

    watcher = threading.Thread(target=watch_process_list)
    watcher.start()
    boot_before = sh(lab, "cat /proc/sys/kernel/random/boot_id")
    report = tmp_path / "report.json"
    try:
        result, console = run(builder, report)
    finally:
        done.set()
        watcher.join()
    assert result.status == "changed", result.error + console
    assert result.reboots == 1 and sh(lab, "cat /proc/sys/kernel/random/boot_id") != boot_before
    assert result.reconnects == 1, "the docker group arrived, and the run went on over a new login"
    assert sh(lab, "systemctl is-active docker").strip() == "active"
    daemon = json.loads(sh(lab, "cat /etc/docker/daemon.json"))
    assert daemon["log-level"] == "warn", "the user's own setting survives"
    assert daemon["runtimes"]["nvidia"]["path"] == "nvidia-container-runtime"
    assert daemon["storage-driver"] == "vfs"
    versions = sh(lab, "dpkg-query -W -f='${Version}\\n' " + " ".join(TOOLKIT)).split()
    assert versions == ["1.18.0-1"] * 4
    assert set(sh(lab, "apt-mark showhold").split()) >= set(TOOLKIT) | {"nvidia-driver-580-server"}
    assert "tmux" in sh(lab, "dpkg-query -W -f='${Package}\\n' tmux")
    assert "docker" in sh(lab, "id -nG ubuntu").split()
    for path in ("/home/ubuntu/.docker/config.json", "/home/ubuntu/.apptainer/docker-config.json"):
        assert sh(lab, f"stat -c %a {path}").strip() == "600"
    assert "10.200.0.1:5000" in sh(lab, "cat /home/ubuntu/.docker/config.json")
    assert sh(lab, "ls /etc/apt/sources.list.d/").split() == sorted(sh(lab, "ls /etc/apt/sources.list.d/").split())
    assert "docker.list.disabled-by-provision" in sh(lab, "ls /etc/apt/sources.list.d/")
    verify = next(s for s in result.steps if s.role == "verify")
    assert verify.status == "ok" and "Tesla V100-SXM2-16GB" in verify.detail
    assert PLANTED not in console
    assert PLANTED not in report.read_text()
    assert seen_processes and not any(PLANTED in snapshot for snapshot in seen_processes)


def test_second_run_and_check_mode_change_nothing(lab, builder):
    second, _ = run(builder)
    assert (second.status, second.changed, second.reboots) == ("ok", 0, 0), [
        (s.task, s.status) for s in second.steps if s.status != "ok"]
    checked, _ = run(builder, check=True)
    assert checked.changed == 0, [(s.task, s.status) for s in checked.steps if s.status == "would-change"]
