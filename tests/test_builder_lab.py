"""The whole GPU build-host stack on a lab host with systemd, against the lab's stand-ins (tests/labstack.py)."""
from __future__ import annotations

import io
import json
import threading
from pathlib import Path

import pytest
from rich.console import Console

from provision import cli
from provision.runner import RunOptions
from tests.helpers import PROJECT, write
from tests.labstack import BUILDER_ROLES, Stack

pytestmark = pytest.mark.lab
PLANTED = "nvapi-PLANTED-7f3a9c-never-shown"
HOST = "gpu1"
BUILDER = ",".join(BUILDER_ROLES)
TOOLKIT = ["nvidia-container-toolkit", "nvidia-container-toolkit-base", "libnvidia-container-tools", "libnvidia-container1"]


@pytest.fixture(scope="module")
def builder(lab, tmp_path_factory, monkeypatch_module):
    monkeypatch_module.setenv("NGC_API_KEY", PLANTED)
    stack = Stack(lab, PLANTED)
    stack.make_gpu_host(HOST)
    root = lab.rootfs(HOST)
    # The machine as it was before the tool: a daemon.json setting of the user's, and a
    # docker.list with another key, left by an old install guide.
    write(root / "etc/docker/daemon.json", '{"log-level": "warn"}\n')
    write(root / "etc/apt/keyrings/docker.gpg", stack.repos.apptainer.key_file.read_text())
    write(root / "etc/apt/sources.list.d/docker.list",
          f"deb [signed-by=/etc/apt/keyrings/docker.gpg] {stack.repos.docker.url(stack.repos.base_url)} bookworm stable\n")
    yield stack.inventory(tmp_path_factory.mktemp("builder"), {HOST: {}})
    stack.stop()


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
    assert result.reconnects == 1, ("the docker group arrived, and the run went on over a new login",
                                    [(s.task, s.status) for s in result.steps if s.role == "docker_ce"])
    assert sh(lab, "systemctl is-active docker").strip() == "active"
    daemon = json.loads(sh(lab, "cat /etc/docker/daemon.json"))
    assert daemon["log-level"] == "warn", "the user's own setting survives"
    assert daemon["runtimes"]["nvidia"]["path"] == "nvidia-container-runtime"
    assert daemon["storage-driver"] == "vfs"
    versions = sh(lab, "dpkg-query -W -f='${Version}\\n' " + " ".join(TOOLKIT)).split()
    assert versions == ["1.20.0-1"] * 4
    assert set(sh(lab, "apt-mark showhold").split()) >= set(TOOLKIT) | {"nvidia-driver-580-server"}
    assert "tmux" in sh(lab, "dpkg-query -W -f='${Package}\\n' tmux")
    assert "docker" in sh(lab, "id -nG ubuntu").split()
    for path in ("/home/ubuntu/.docker/config.json", "/home/ubuntu/.apptainer/docker-config.json"):
        assert sh(lab, f"stat -c %a {path}").strip() == "600"
    assert "10.200.0.1:5000" in sh(lab, "cat /home/ubuntu/.docker/config.json")
    sources = set(sh(lab, "ls /etc/apt/sources.list.d/").split())
    assert {"docker.sources", "nvidia-container-toolkit.list", "apptainer.sources"} <= sources
    assert "docker.list" not in sources and "docker.list.disabled-by-provision" in sources
    assert "signed-by=/etc/apt/keyrings/docker.gpg" in sh(lab, "cat /etc/apt/sources.list.d/docker.list.disabled-by-provision"), \
        "the old guide's source was renamed, not deleted"
    verify = {s.task: s for s in result.steps if s.role == "verify"}
    assert verify["nvidia-smi sees the GPUs"].status == "ok"
    assert "Tesla V100-SXM2-16GB" in verify["nvidia-smi sees the GPUs"].detail
    assert verify["Apptainer runs a container with --nv"].detail.startswith("GPU 0: Tesla V100-SXM2-16GB")
    assert PLANTED not in console
    assert PLANTED not in report.read_text()
    assert seen_processes and not any(PLANTED in snapshot for snapshot in seen_processes)


def test_second_run_and_check_mode_change_nothing(lab, builder):
    second, _ = run(builder)
    assert (second.status, second.changed, second.reboots) == ("ok", 0, 0), [
        (s.task, s.status) for s in second.steps if s.status != "ok"]
    checked, _ = run(builder, check=True)
    assert checked.changed == 0, [(s.task, s.status) for s in checked.steps if s.status == "would-change"]
