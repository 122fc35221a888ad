"""An Ansible INI inventory on real lab hosts: a bastion given as ssh ProxyCommand, sudo with a password."""
from __future__ import annotations

import io
import json
import shutil
import subprocess

import paramiko
import pytest
from rich.console import Console

from provision import cli
from provision.runner import RunOptions
from tests.helpers import PROJECT, write

pytestmark = pytest.mark.lab
PASSWORD = "lab-sudo-Pw-4f9c2e"  # alice's sudo password: must reach sudo and appear nowhere else


def _only_from(lab, host: str, gateway: str) -> None:
    """The host accepts SSH only from the gateway: a direct connection cannot succeed."""
    subprocess.run(["ip", "netns", "exec", lab.host(host).netns, "iptables", "-A", "INPUT", "-p", "tcp", "--dport", "22",
                    "!", "-s", lab.host(gateway).address, "-j", "DROP"], check=True)


def _password_sudo_user(lab, host: str) -> None:
    """alice: key login, and sudo only with her password (no NOPASSWD)."""
    lab.exec(host, "useradd -m -s /bin/sh alice && chpasswd && install -d -m 700 -o alice -g alice /home/alice/.ssh"
                   " && install -m 600 -o alice -g alice /root/.ssh/authorized_keys /home/alice/.ssh/"
                   " && printf 'alice ALL=(ALL:ALL) ALL\\n' > /etc/sudoers.d/alice && chmod 440 /etc/sudoers.d/alice",
             input=f"alice:{PASSWORD}\n".encode())
    assert lab.exec(host, "su alice -c 'sudo -n true'", check=False).returncode != 0, "sudo must need the password"


def test_host_behind_proxycommand_with_password_sudo_is_provisioned(lab, tmp_path, monkeypatch):
    lab.up(["gw14", "sudo14"])
    _only_from(lab, "sudo14", "gw14")
    _password_sudo_user(lab, "sudo14")
    gateway, target = lab.host("gw14").address, lab.host("sudo14").address
    inventory = tmp_path / "inventory"
    shutil.copytree(PROJECT / "tests" / "fixtures" / "inventories" / "deepops" / "group_vars", inventory / "group_vars")
    proxy = (f"ssh -i {lab.client_key} -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes "
             f"-o UserKnownHostsFile={lab.known_hosts_path} -W %h:%p -q root@{gateway}")
    write(inventory / "inventory", f"""
        # As a DeepOps user writes it: INI, the bastion as ssh ProxyCommand, sudo with a password.
        [builders]
        sudo14 ansible_host={target} ansible_user=alice

        [builders:vars]
        ansible_ssh_private_key_file={lab.client_key}
        ansible_ssh_common_args='-o ProxyCommand="{proxy}"'
        ansible_become=true
        ansible_become_user=root
        base_apt_proxy=http://10.200.0.1:3142
        helper_tools_packages=['tmux']
    """)
    write(inventory / "host_vars" / "sudo14.yml", "ansible_become_password: {secret_env: LAB_SUDO_PASSWORD}\n")
    (inventory / "known_hosts").write_text("".join(
        line + "\n" for line in lab.known_hosts_path.read_text().splitlines() if line.split()[0] == target))
    monkeypatch.setenv("LAB_SUDO_PASSWORD", PASSWORD)
    commands, proxies = [], []
    exec_command, proxy_init = paramiko.Channel.exec_command, paramiko.ProxyCommand.__init__
    monkeypatch.setattr(paramiko.Channel, "exec_command", lambda ch, cmd: (commands.append(cmd), exec_command(ch, cmd))[1])
    monkeypatch.setattr(paramiko.ProxyCommand, "__init__", lambda s, cmd: (proxies.append(cmd), proxy_init(s, cmd))[1])
    shown = io.StringIO()
    report = tmp_path / "report.json"

    result = cli.provision(inventory, "sudo14", None, "base,helper_tools", RunOptions(), str(report),
                           Console(file=shown, width=200), PROJECT / "roles")["sudo14"]

    assert result.status == "changed", result.error
    assert lab.exec("sudo14", "dpkg-query -W -f='${Status}' tmux").stdout == "install ok installed"
    assert lab.exec("sudo14", "stat -c %U /etc/apt/apt.conf.d/81provision-proxy").stdout.strip() == "root"
    assert all(f"root@{gateway}" in p and "-W " in p for p in proxies) and proxies, "every connection went through gw14"
    assert "sudo -k -S -p '' sh -s" in commands, commands
    for text in commands + proxies + [shown.getvalue(), report.read_text(), json.dumps(result.__dict__, default=str)]:
        assert PASSWORD not in text
