"""Hostile values that pass validation (URLs with $( ), ;, quotes; free text) run on a lab host and plant nothing."""
from __future__ import annotations

import glob
import os
from pathlib import Path

import pytest
from rich.console import Console

from provision import cli
from provision.inventory import load_inventory
from provision.roles import load_roles
from provision.runner import RunOptions
from provision.userdata import build_userdata
from tests.helpers import PROJECT, roles_with, write
from tests.labstack import keep_known_hosts

pytestmark = pytest.mark.lab

BUILDER = "base,helper_tools,nvidia_driver,docker_ce,nvidia_container_toolkit,apptainer,ngc_login,verify"
# Each would create /PWN-<tag> if it ever reached sh unquoted. $IFS stands in for the space a URL may not hold.
TEXT = "$(touch /PWN-a) `touch /PWN-b` '; touch /PWN-c; ' \"; touch /PWN-d; \" ; touch /PWN-e & -oX"


def url(tag: str) -> str:
    return f"http://10.200.0.1:9/{tag}/$(touch$IFS/PWN-{tag});touch$IFS/PWN-{tag}-2&x=1"


URLS = {name: url(name.replace("_", "-")) for name in [
    "docker_ce_repo_url", "docker_ce_key_url", "nvidia_container_toolkit_repo_url", "nvidia_container_toolkit_key_url",
    "apptainer_ppa_url", "apptainer_ppa_key_url", "apptainer_deb_url", "nvidia_driver_cuda_repo_url",
    "nvidia_driver_cuda_key_url"]}
DAEMON = {"x-hostile": TEXT, "x'; touch /PWN-key; '": "`touch /PWN-value`"}


def planted(lab, host: str) -> list[str]:
    """Planted files on the lab host and on this machine (where templates render)."""
    there = lab.exec(host, "ls -d /PWN* /tmp/PWN* /root/PWN* 2>/dev/null; true").stdout.split()
    return there + glob.glob("/PWN*") + glob.glob(f"{os.getcwd()}/PWN*")


def inventory_for(tmp_path: Path, lab, name: str) -> Path:
    directory = tmp_path / "hosts"
    write(directory / "inventory.yml", f"""
        all:
          vars: {{ssh_key: {lab.client_key}, base_apt_proxy: "http://10.200.0.1:3142"}}
          hosts:
            {name}:
              ansible_host: {lab.host(name).address}
              ansible_user: root
              declared_facts: {{os_id: debian, os_version_id: "12", os_codename: bookworm, arch: amd64,
                                instance_type: "p3.2xlarge;$(touch$IFS/PWN-it)'",
                                gpus: [{{pci_id: "10de:1db1"}}]}}
    """)
    keep_known_hosts(lab, directory, [name])
    return directory


def provision(inventory: Path, host: str, roles: str, roles_dir: Path, **options) -> dict:
    console = Console(file=open(os.devnull, "w"))
    return cli.provision(inventory, host, None, roles, RunOptions(**options), None, console, roles_dir)[host]


def test_the_builder_stack_with_hostile_values_plants_nothing_in_check_mode_real_runs_or_user_data(lab, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NGC_API_KEY", "key$(touch /PWN-secret)'\"`touch /PWN-secret2`")
    lab.up(["hostile1"])
    inventory = inventory_for(tmp_path, lab, "hostile1")
    # The lab host is Debian 12: the routes Debian has (the PPA and ubuntu-drivers are refused there at preflight).
    extra = {**URLS, "docker_ce_daemon_settings": DAEMON, "hostile_text": TEXT,
             "apptainer_source": "deb", "nvidia_driver_route": "cuda-repo"}
    roles = roles_with(tmp_path, {"hostile": {
        "defaults.yml": "hostile_text: x\n",
        "tasks.yml": """
            - name: A file holding the text
              file: {path: /tmp/hostile/file, content: "{{ hostile_text }}\\n"}
            - name: A line holding the text
              line: {path: /tmp/hostile/lines, line: "{{ hostile_text }}"}
            - name: A JSON value holding the text
              json_merge: {path: /tmp/hostile/settings.json, data: {text: "{{ hostile_text }}"}}
            - name: The text as one argument
              command: {run: [sh, -c, 'printf "%s" "$1" > /tmp/hostile/argv', sh, "{{ hostile_text }}"], creates: /tmp/hostile/argv}
            - name: The text through raw shell and | quote
              command: {shell: "printf '%s' {{ hostile_text | quote }} > /tmp/hostile/quoted", creates: /tmp/hostile/quoted}
            - name: Docker's daemon settings merged whole
              json_merge: {path: /tmp/hostile/daemon.json, data: "{{ docker_ce_daemon_settings }}"}
        """,
    }})
    write(roles / "hostile" / "meta.yml", "dependencies: []\nkinds: {hostile_text: line}\n")

    # 1. The whole builder stack in check mode: every check runs, with the hostile URLs and secret.
    check = provision(inventory, "hostile1", BUILDER + ",hostile", roles, check=True, extra=extra)
    assert check.status in ("ok", "changed"), check.error
    assert [s.task for s in check.steps if s.status == "would-change"][:1] == ["Make apt wait for the dpkg lock instead of failing"]
    assert planted(lab, "hostile1") == []

    # 2. For real: what a plain lab host can run (base, helper tools, every operation with the text).
    real = provision(inventory, "hostile1", "base,helper_tools,hostile", roles, extra=extra)
    assert real.status == "changed", real.error
    for name in ("argv", "quoted"):
        assert lab.exec("hostile1", f"cat /tmp/hostile/{name}").stdout == TEXT
    assert lab.exec("hostile1", "cat /tmp/hostile/file /tmp/hostile/lines").stdout == f"{TEXT}\n{TEXT}\n"
    assert TEXT.replace('"', '\\"') in lab.exec("hostile1", "cat /tmp/hostile/settings.json").stdout
    assert "x'; touch /PWN-key; '" in lab.exec("hostile1", "cat /tmp/hostile/daemon.json").stdout
    again = provision(inventory, "hostile1", "base,helper_tools,hostile", roles, extra=extra)
    assert (again.status, again.changed) == ("ok", 0), again.error
    assert planted(lab, "hostile1") == []

    # 3. The builder stack's user-data (plain shell, unpacked: its size is not the point) run under sh: its boot check prints the hostile instance type as
    #    text; then its script, run by hand, goes as far as a plain host allows (Docker's hostile URL).
    target = load_inventory(inventory).host("hostile1")
    data = build_userdata(load_roles(roles, BUILDER.split(",")), target, extra, "shell", embed_secrets=True)
    booted = lab.exec("hostile1", "sh -s", input=data.body, check=False)
    log = lab.exec("hostile1", "cat /var/log/provision-userdata.log /var/lib/provision/userdata-status").stdout
    assert "the user-data for hostile1 was made for p3.2xlarge;$(touch$IFS/PWN-it)'" in log, (booted, log)
    assert log.rstrip().endswith("failed facts")
    script = lab.exec("hostile1", "sh /var/lib/provision/userdata-run.sh", check=False)
    assert "@@prov - finished" not in script.stdout, "Docker's hostile URL cannot be fetched"
    assert "@@prov 2 " in script.stdout, "the script ran past its first steps"
    assert planted(lab, "hostile1") == []
