"""User-data run for real by cloud-init on a lab host reaches the state `provision` reaches over SSH on a twin."""
from __future__ import annotations

import io
import time

import pytest
from rich.console import Console

from provision import cli
from provision.inventory import load_inventory
from provision.lab.commands import LabError
from provision.roles import load_roles
from provision.runner import RunOptions
from provision.userdata import render_userdata
from tests.helpers import PROJECT, write
from tests.labstack import BUILDER_ROLES, V100, running_stack

pytestmark = pytest.mark.lab
PLANTED = "nvapi-PLANTED-userdata-5d1e"
BOOTED, TWIN = "udboot1", "udtwin1"
PROXY = "-o Acquire::http::Proxy=http://10.200.0.1:3142 -o Acquire::http::Proxy::10.200.0.1=DIRECT"
DECLARED = {"os_id": "ubuntu", "os_version_id": "24.04", "os_codename": "noble", "arch": "amd64",
            "gpus": [{"slot": V100[0], "pci_id": V100[1], "class": V100[2]}]}
MANAGED = ["/etc/apt/apt.conf.d/80provision-lock-timeout", "/etc/apt/apt.conf.d/81provision-proxy",
           "/etc/apt/apt.conf.d/51provision-nvidia-no-unattended", "/etc/apt/sources.list.d/docker.sources",
           "/etc/apt/sources.list.d/nvidia-container-toolkit.list", "/etc/apt/sources.list.d/apptainer.sources",
           "/etc/apt/keyrings/docker.asc", "/etc/apt/keyrings/apptainer.gpg",
           "/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg", "/etc/docker/daemon.json",
           "/etc/modprobe.d/blacklist-nouveau.conf", "/etc/environment", "/home/ubuntu/.docker/config.json",
           "/home/ubuntu/.apptainer/docker-config.json", "/var/lib/apptainer-build/tmp", "/var/lib/apptainer-build/cache"]


def packages(lab, name: str) -> set[str]:
    return set(lab.exec(name, "dpkg-query -W -f='${db:Status-Abbrev} ${Package} ${Version}\\n'").stdout.splitlines())


def digest(lab, name: str) -> dict:
    """What the roles are responsible for: files (content, mode, owner), holds, groups, services."""
    files = lab.exec(name, "for f in " + " ".join(MANAGED) + "; do stat -c '%n %a %U %G' \"$f\"; "
                     "[ -f \"$f\" ] && sha256sum \"$f\"; done", check=False).stdout
    return {
        "files": files,
        "held": lab.exec(name, "apt-mark showhold").stdout,
        "groups": lab.exec(name, "id -nG ubuntu").stdout,
        "docker": lab.exec(name, "systemctl is-active docker", check=False).stdout.strip(),
    }


def wait_for_status(lab, name: str, wanted: set[str], timeout: float = 900) -> str:
    deadline, status = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        try:
            status = lab.exec(name, "cat /var/lib/provision/userdata-status 2>/dev/null", check=False).stdout.strip()
        except LabError:
            status = "(rebooting)"
        if status.split(" ")[0] in wanted:
            return status
        time.sleep(3)
    raise AssertionError(f"user-data status still {status!r} after {timeout}s")


@pytest.fixture(scope="module")
def stack(lab):
    with running_stack(lab, PLANTED) as made:
        yield made


def test_cloud_init_runs_the_user_data_to_the_same_state_as_ssh_then_a_further_boot_changes_nothing(lab, stack, tmp_path):
    stack.make_gpu_host(BOOTED)
    stack.make_gpu_host(TWIN)
    inventory = stack.inventory(tmp_path / "hosts", {BOOTED: {"declared_facts": DECLARED}, TWIN: {}})
    # Debian's cloud-init with a NoCloud seed: the instance's own boot runs the user-data.
    lab.exec(BOOTED, f"apt-get {PROXY} update -qq && DEBIAN_FRONTEND=noninteractive apt-get {PROXY} install -y -qq cloud-init > /dev/null")
    host = load_inventory(inventory).host(BOOTED)
    data = render_userdata(load_roles(PROJECT / "roles", BUILDER_ROLES), host, {}, "mime", embed_secrets=True)
    root = lab.rootfs(BOOTED)
    write(root / "etc/cloud/cloud.cfg.d/99-lab.cfg", "datasource_list: [NoCloud]\nnetwork: {config: disabled}\n")
    write(root / "var/lib/cloud/seed/nocloud/meta-data", f"instance-id: {BOOTED}-1\nlocal-hostname: {BOOTED}\n")
    (root / "var/lib/cloud/seed/nocloud/user-data").write_bytes(data.body)
    before_boot = packages(lab, BOOTED)
    lab.stop(BOOTED)
    lab.start(BOOTED)

    twin = cli.provision(inventory, TWIN, None, ",".join(BUILDER_ROLES), RunOptions(), None,
                         Console(file=io.StringIO()), PROJECT / "roles")[TWIN]
    assert twin.status == "changed", twin.error
    status = wait_for_status(lab, BOOTED, {"finished", "failed"})
    log = lab.exec(BOOTED, "cat /var/log/provision-userdata.log").stdout
    assert status == "finished", log[-3000:]
    assert log.count("== provision: boot") == 2 and "rebooting at a reboot point" in log, "one reboot, then resumed"
    assert PLANTED not in log

    assert digest(lab, BOOTED) == digest(lab, TWIN)
    installed_by_ssh = packages(lab, TWIN) - packages_of_base(lab)
    installed_by_userdata = packages(lab, BOOTED) - before_boot
    assert installed_by_ssh and installed_by_ssh <= packages(lab, BOOTED), "same packages, same versions"
    assert installed_by_userdata <= packages(lab, TWIN), "and nothing else"

    state = digest(lab, BOOTED)
    lab.stop(BOOTED)
    lab.start(BOOTED)
    # cloud-init's per-boot stage (where the resume hook lives) has run once `status --wait` returns.
    lab.exec(BOOTED, "timeout 300 cloud-init status --wait > /dev/null", check=False)
    assert wait_for_status(lab, BOOTED, {"finished"}, timeout=60) == "finished"
    assert lab.exec(BOOTED, "cat /var/log/provision-userdata.log").stdout == log, "a further boot runs nothing"
    assert digest(lab, BOOTED) == state


def packages_of_base(lab) -> set[str]:
    """Packages of a fresh systemd lab host, before any tool ran."""
    lab.up(["udbase1"], systemd=True)
    return packages(lab, "udbase1")
