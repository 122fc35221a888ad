"""An install cut short (apt and dpkg killed mid-install) is repaired by the next run, which then converges."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from rich.console import Console

from provision import cli
from provision.runner import RunOptions
from tests.helpers import PROJECT, write
from tests.labstack import keep_known_hosts

pytestmark = pytest.mark.lab

# The first time it is configured, this package's postinst kills apt-get and dpkg with SIGKILL:
# the state a killed apt, a power cut or a reboot mid-install leaves (dpkg's journal in
# /var/lib/dpkg/updates, the package unpacked but not configured).
POSTINST = """#!/bin/sh
marker=/var/lib/prov-cut-short.once
if [ "$1" = configure ] && [ ! -e $marker ]; then
  : > $marker
  dpkg_pid=$PPID
  apt_pid=$(cut -d' ' -f4 /proc/$dpkg_pid/stat)
  kill -9 "$apt_pid" "$dpkg_pid"
fi
exit 0
"""


def cut_short_deb(tmp_path: Path, postinst: str = POSTINST) -> bytes:
    root = tmp_path / "pkg"
    write(root / "DEBIAN" / "control", """
        Package: prov-cut-short
        Version: 1.0
        Architecture: all
        Maintainer: provision tests <tests@lab.invalid>
        Description: an install that is killed the first time it is configured
    """)
    (root / "DEBIAN" / "postinst").write_text(postinst)
    (root / "DEBIAN" / "postinst").chmod(0o755)
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(root), str(tmp_path / "cut.deb")],
                   check=True, capture_output=True)
    return (tmp_path / "cut.deb").read_bytes()


def inventory_for(tmp_path: Path, lab, name: str) -> Path:
    directory = tmp_path / "hosts"
    write(directory / "inventory.yml", f"""
        all:
          vars: {{ssh_key: {lab.client_key}, base_apt_proxy: "http://10.200.0.1:3142"}}
          hosts:
            {name}: {{ansible_host: {lab.host(name).address}, ansible_user: root}}
    """)
    keep_known_hosts(lab, directory, [name])
    return directory


def provision(inventory: Path, host: str) -> dict:
    console = Console(file=open(os.devnull, "w"))
    options = RunOptions(extra={"helper_tools_packages": ["tmux"]})
    return cli.provision(inventory, host, None, "helper_tools", options, None, console, PROJECT / "roles")


def test_apt_killed_mid_install_is_repaired_by_the_next_run_which_converges(lab, tmp_path):
    lab.up(["dpkg1"])
    lab.exec("dpkg1", "cat > /var/tmp/cut.deb", input=cut_short_deb(tmp_path))
    killed = lab.exec("dpkg1", "apt-get install -y /var/tmp/cut.deb", check=False)
    assert killed.returncode != 0
    refused = lab.exec("dpkg1", "apt-get install -y tmux", check=False)
    assert "dpkg was interrupted, you must manually run 'dpkg --configure -a'" in refused.stdout + refused.stderr

    inventory = inventory_for(tmp_path, lab, "dpkg1")
    first = provision(inventory, "dpkg1")["dpkg1"]
    assert first.status == "changed", first.error
    steps = {step.task: step.status for step in first.steps}
    assert steps["repair an interrupted dpkg before any apt step"] == "changed"
    assert steps["Install the helper tools"] == "changed"
    status = lab.exec("dpkg1", "dpkg-query -W -f='${db:Status-Abbrev}' prov-cut-short tmux; dpkg --audit").stdout
    assert status == "ii ii "

    second = provision(inventory, "dpkg1")["dpkg1"]
    assert (second.status, second.changed) == ("ok", 0), second.error


def test_a_repair_that_fails_says_so_in_one_line_and_stops_before_apt(lab, tmp_path):
    lab.up(["dpkg2"])
    broken = POSTINST.replace("exit 0", "echo 'postinst: cannot configure' >&2; exit 1")
    lab.exec("dpkg2", "cat > /var/tmp/cut.deb", input=cut_short_deb(tmp_path, broken))
    assert lab.exec("dpkg2", "apt-get install -y /var/tmp/cut.deb", check=False).returncode != 0

    result = provision(inventory_for(tmp_path, lab, "dpkg2"), "dpkg2")["dpkg2"]
    assert result.status == "failed"
    assert result.error.splitlines()[0].startswith("dpkg2: step 1 (dpkg: repair an interrupted dpkg before any apt step) failed")
    assert result.error.splitlines()[-1].startswith("provision: dpkg --configure -a failed: ")
    assert "prov-cut-short" in result.error.splitlines()[-1]
    assert [step.task for step in result.steps] == ["repair an interrupted dpkg before any apt step"]
