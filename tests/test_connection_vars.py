"""Ansible's connection and become variables: honoured for what they mean to us, refused in one line otherwise."""
from __future__ import annotations

import pytest

from provision.connection import proxy_command_line
from provision.errors import InventoryError
from provision.inventory import load_inventory
from provision.runner import script_command, script_stdin
from provision.secrets import Secret
from tests.helpers import write


def host_with(tmp_path, line: str, name: str = "h1"):
    write(tmp_path / "hosts", f"[gpu]\n{name} {line}\n")
    return load_inventory(tmp_path / "hosts").host(name)


def test_ansible_ssh_aliases_and_key_file_names_are_read(tmp_path):
    host = host_with(tmp_path, "ansible_ssh_host=192.0.2.7 ansible_ssh_user=ubuntu ansible_ssh_port=2200 "
                               "ansible_private_key_file=~/.ssh/lab")
    assert (host.address, host.user, host.port, host.ssh_key) == ("192.0.2.7", "ubuntu", 2200, "~/.ssh/lab")


def test_common_args_give_proxy_command_with_tokens_expanded_for_sh(tmp_path):
    host = host_with(tmp_path, "ansible_host=10.0.2.1 ansible_user=ubuntu "
                               "ansible_ssh_common_args='-o ProxyCommand=\"ssh -W %h:%p -q ubuntu@10.0.0.1\"'")
    assert host.proxy_command == "ssh -W %h:%p -q ubuntu@10.0.0.1" and host.gateway is None
    assert proxy_command_line(host) == "exec ssh -W 10.0.2.1:22 -q ubuntu@10.0.0.1"


def test_jump_port_user_and_identity_from_ssh_args_lose_to_ansible_variables(tmp_path):
    host = host_with(tmp_path, "ansible_port=2222 ansible_ssh_extra_args='-J alice@bastion:2201 -p 2300 -l bob "
                               "-i /keys/id -o ControlMaster=auto -C'")
    assert (host.gateway, host.port, host.user, host.ssh_key) == ("alice@bastion:2201", 2222, "bob", "/keys/id")


@pytest.mark.parametrize("args, message", [
    ("-o StrictHostKeyChecking=no", r"cannot honour ssh option 'StrictHostKeyChecking=no' \(host keys are always checked"),
    ("-L 8080:localhost:80", r"cannot honour '-L'"),
    ("-o LocalForward=8080", r"cannot honour ssh option 'LocalForward=8080'"),
    ("-J a,b", r"ProxyJump through several hops"),
    ("-p twenty", r"port 'twenty' is not a number"),
])
def test_ssh_args_we_cannot_honour_are_refused_naming_host_and_value(tmp_path, args, message):
    with pytest.raises(InventoryError, match=rf"^host h1: ansible_ssh_common_args: .*{message}"):
        host_with(tmp_path, f"ansible_ssh_common_args='{args}'")


@pytest.mark.parametrize("line, message", [
    ("ansible_become_method=su", r"ansible_become_method 'su': only sudo is supported"),
    ("ansible_connection=winrm", r"connection type 'winrm' is not supported"),
    ("ansible_connection=docker", r"connection type 'docker' is not supported"),
    ("gateway=b ansible_ssh_common_args='-o ProxyCommand=\"nc %h %p\"'", r"both a gateway"),
])
def test_other_become_methods_and_connection_types_are_refused_at_load(tmp_path, line, message):
    with pytest.raises(InventoryError, match=rf"^host h1: {message}"):
        host_with(tmp_path, line)


def test_become_password_goes_to_sudo_on_stdin_never_argv(tmp_path):
    host = host_with(tmp_path, "ansible_user=alice ansible_become_user=root ansible_become_password=s3cr3t-pw")
    needs_password = {"user": "alice", "sudo": False}
    command = script_command(needs_password, host.become)
    assert command == "sudo -k -S -p '' sh -s" and "s3cr3t" not in command
    assert script_stdin(command, host.become, "echo hi\n") == "s3cr3t-pw\necho hi\n"
    assert script_command({"user": "alice", "sudo": True}, host.become) == "sudo -n sh -s"
    assert script_command({"user": "root", "sudo": True}, host.become) == "sh -s"


def test_become_user_and_secret_password(tmp_path, monkeypatch):
    host = host_with(tmp_path, "ansible_become_user=builder")
    assert script_command({"user": "alice", "sudo": True}, host.become) == "sudo -n -u builder sh -s"
    become = type(host.become)("root", Secret("ansible_become_password", "pw"))
    assert script_stdin("sudo -k -S -p '' sh -s", become, "x") == "pw\nx"


def test_inventory_host_view_hides_passwords(tmp_path):
    from provision.inventory_view import host_view
    write(tmp_path / "hosts", "[gpu]\nh1 ansible_become_password=s3cr3t ngc='{\"secret_env\": \"NGC\"}'\n")
    shown = host_view(load_inventory(tmp_path / "hosts"), "h1")
    assert shown["ansible_become_password"] == "***" and shown["ngc"] == "***"
