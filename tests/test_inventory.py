"""The inventory: Ansible's shape, precedence, and errors that name the file and line."""
from __future__ import annotations

import pytest

from provision.cli import parse_extra, prepare
from provision.errors import InventoryError, ProvisionError
from provision.inventory import load_inventory
from tests.helpers import PROJECT, write


def test_shipped_examples_load_with_their_connection_settings():
    inventory = load_inventory(PROJECT / "hosts")
    builder = inventory.host("p3-builder")
    assert (builder.user, "builder" in builder.groups) == ("ubuntu", True)
    assert inventory.host("hpc01").gateway == "bastion"
    assert inventory.host("localhost").transport == "local"


def test_precedence_is_all_then_group_then_host(tmp_path):
    write(tmp_path / "inventory.yml", """
        all:
          vars: {level: all, only_all: 1}
          children:
            gpu:
              vars: {level: group}
              children:
                v100:
                  vars: {level: subgroup}
                  hosts:
                    a: {level: host}
                    b:
    """)
    write(tmp_path / "group_vars" / "gpu.yml", "from_file: group\n")
    write(tmp_path / "host_vars" / "b.yml", "from_file: host\n")
    inventory = load_inventory(tmp_path)
    assert inventory.host("a").vars["level"] == "host"
    assert inventory.host("b").vars["level"] == "subgroup"
    assert inventory.host("b").vars["from_file"] == "host"
    assert inventory.host("a").vars["from_file"] == "group"
    assert inventory.host("a").vars["only_all"] == 1
    assert [h.name for h in inventory.select(group="gpu")] == ["a", "b"]


def test_ansible_keys_and_ours_are_both_accepted(tmp_path):
    write(tmp_path / "inventory.yml", """
        all:
          hosts:
            x: {ansible_host: 10.0.0.5, ansible_user: ubuntu, ansible_port: 2222}
            y: {host: 10.0.0.6, user: root, port: 22, ssh_key: ~/.ssh/lab}
    """)
    inventory = load_inventory(tmp_path)
    x, y = inventory.host("x"), inventory.host("y")
    assert (x.address, x.user, x.port) == ("10.0.0.5", "ubuntu", 2222)
    assert (y.address, y.user, y.port, y.ssh_key) == ("10.0.0.6", "root", 22, "~/.ssh/lab")


def test_malformed_yaml_names_file_and_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "hosts" / "inventory.yml", """
        all:
          hosts:
            a:
           b: 1
    """)
    with pytest.raises(InventoryError) as error:
        load_inventory(tmp_path / "hosts")
    assert str(error.value).startswith("hosts/inventory.yml:4:4: malformed YAML")


def test_unknown_group_key_names_file_and_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "hosts" / "inventory.yml", """
        all:
          children:
            gpu:
              host:
                a:
    """)
    with pytest.raises(InventoryError) as error:
        load_inventory(tmp_path / "hosts")
    assert str(error.value) == (
        "hosts/inventory.yml:4: group 'gpu' has unknown key 'host' (groups take hosts:, vars:, children:)"
    )


def test_unknown_host_and_group_list_the_known_ones():
    inventory = load_inventory(PROJECT / "hosts")
    with pytest.raises(InventoryError, match=r"unknown host 'p3' in .*; known hosts: bastion, hpc01, localhost, p3-builder"):
        inventory.select(host="p3")
    with pytest.raises(InventoryError, match=r"unknown group 'gpus' .*known groups: all, bastions, builder, hpc, local"):
        inventory.select(group="gpus")


def test_extra_vars_are_yaml_and_win_over_the_inventory(tmp_path):
    write(tmp_path / "inventory.yml", """
        all:
          vars: {roles: [helper_tools], helper_tools_extra: [nvtop]}
          hosts:
            a: {ansible_host: 192.0.2.1}
    """)
    extra = parse_extra(["helper_tools_extra=[iotop, nvtop]", "base_apt_lock_timeout=30"])
    assert extra == {"helper_tools_extra": ["iotop", "nvtop"], "base_apt_lock_timeout": 30}
    _, prepared = prepare(tmp_path, "a", None, None, extra)
    assert [role.name for role in prepared[0][1]] == ["base", "helper_tools"]
    host, roles = prepared[0]
    assert host.vars["helper_tools_extra"] == ["nvtop"], "the inventory says nvtop only"
    from provision.compiler import plan_host
    from provision.facts import EXAMPLE_FACTS
    script = "\n".join(p.step.apply + (p.step.desired or b"").decode()
                       for p in plan_host(roles, host, extra, EXAMPLE_FACTS).steps)
    assert "iotop" in script, "-e's list, not the inventory's, is installed"
    assert 'DPkg::Lock::Timeout "30";' in script, "-e's value reaches the file base writes"
    with pytest.raises(ProvisionError, match="expected key=value"):
        parse_extra(["oops"])


def test_images_left_in_an_inventory_directory_are_not_parsed_as_inventories(tmp_path, monkeypatch):
    """A SIF or archive beside the inventory is skipped unread as INI (parsing megabytes of it takes minutes)."""
    from provision import inventory as inventory_module

    write(tmp_path / "hosts" / "inventory.yml", "all:\n  hosts:\n    a: {ansible_host: 192.0.2.1}\n")
    (tmp_path / "hosts" / "fastai2.sif").write_bytes(b"#!/usr/bin/env run-singularity\n\0\x01binary")
    (tmp_path / "hosts" / "one-line.img").write_bytes(b"z" * 200_000)
    parsed = []
    real = inventory_module.read_source
    monkeypatch.setattr(inventory_module, "read_source", lambda file, data: parsed.append(file.name) or real(file, data))
    assert load_inventory(tmp_path / "hosts").host("a").address == "192.0.2.1"
    assert parsed == ["inventory.yml"]
