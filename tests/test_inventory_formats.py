"""INI inventories, host ranges and vars files as Ansible reads them; bad input refused naming file and line."""
from __future__ import annotations

import re

import pytest

from provision.errors import InventoryError
from provision.inventory import load_inventory
from provision.inventory_ini import parse_value
from provision.inventory_ranges import expand_host_pattern
from tests.helpers import write


def test_ranges_expand_with_leading_zeros_steps_and_letters():
    assert expand_host_pattern("www[01:10:3].example.com", "x")[0] == [
        "www01.example.com", "www04.example.com", "www07.example.com", "www10.example.com"]
    assert expand_host_pattern("db-[a:c]", "x")[0] == ["db-a", "db-b", "db-c"]
    assert expand_host_pattern("n[1:2]-[x:y]:2200", "x") == (["n1-x", "n1-y", "n2-x", "n2-y"], 2200)
    assert expand_host_pattern("10.0.0.[1:3]", "x")[0] == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]


@pytest.mark.parametrize("pattern, why", [("www[01:5]", "same length"), ("db[3:]", "end value"),
                                          ("db[c:a]", "begin <= end"), ("db[1:2:3:4]", "begin:end"),
                                          ("db[1:2:0]", "step")])
def test_bad_ranges_are_refused_naming_the_line(pattern, why):
    with pytest.raises(InventoryError, match=rf"^hosts.ini:7: host range '{re.escape(pattern)}'.*{why}"):
        expand_host_pattern(pattern, "hosts.ini:7")


def test_ini_values_are_python_literals_or_text():
    assert parse_value("222") == 222 and parse_value("True") is True and parse_value("'03'") == "03"
    assert parse_value("[1, 'a']") == [1, "a"] and parse_value("foo bar") == "foo bar"
    assert parse_value("8080 # a comment") == 8080 and parse_value("-o ProxyCommand=x") == "-o ProxyCommand=x"


def test_ini_inventory_with_children_vars_and_ungrouped_hosts(tmp_path):
    write(tmp_path / "hosts.ini", """
        loose ansible_host=192.0.2.9
        [gpu]
        node[1:2] ansible_user=ubuntu  mysecret="'03#pa33'"
        [cluster:children]
        gpu
        [cluster:vars]
        ansible_ssh_common_args='-o ProxyCommand="ssh -W %h:%p -q bastion"'
    """)
    inventory = load_inventory(tmp_path / "hosts.ini")
    node = inventory.host("node2")
    assert (node.user, node.vars["mysecret"], node.groups) == ("ubuntu", "03#pa33", ["cluster", "gpu"])
    assert node.vars["ansible_ssh_common_args"] == '-o ProxyCommand="ssh -W %h:%p -q bastion"'
    assert inventory.host("loose").groups == ["ungrouped"]
    assert [h.name for h in inventory.select(group="cluster")] == ["node1", "node2"]


@pytest.mark.parametrize("text, message", [
    ("[gpu:vars]\na=1\n", r"hosts:1: section \[gpu:vars\] is for a group that is never declared"),
    ("[a:children]\nmissing\n", r"hosts:2: section \[a:children\] names group 'missing', which is never declared"),
    ("[a:other]\n", r"hosts:1: section \[a:other\] has unknown type 'other'"),
    ("[a]\nh1 novalue\n", r"hosts:2: expected key=value after host h1, got 'novalue'"),
    ("[a]\nh1 x='open\n", r"hosts:2: cannot read host line"),
    ("[a b]\n", r"hosts:1: invalid section '\[a b\]'"),
    ("[a:children]\nb\n[b:children]\na\n", r"makes a loop"),
])
def test_bad_ini_is_refused_naming_file_and_line(tmp_path, monkeypatch, text, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hosts").write_text(text)
    with pytest.raises(InventoryError, match=message):
        load_inventory(tmp_path / "hosts")


def test_top_level_groups_beside_all_are_read(tmp_path):
    write(tmp_path / "inventory.yml", """
        gpu:
          hosts: {g1: }
        all:
          vars: {x: 1}
          hosts: {a1: }
    """)
    inventory = load_inventory(tmp_path)
    assert inventory.host("g1").vars["x"] == 1 and inventory.host("g1").groups == ["gpu"]
    assert inventory.groups["all"].children == ["ungrouped", "gpu"]
    assert inventory.host("a1").groups == ["ungrouped"]


def test_vars_files_without_extension_json_and_directories(tmp_path):
    write(tmp_path / "inventory.yml", "all:\n  hosts: {a: }\n  children: {gpu: {hosts: {a: }}}\n")
    write(tmp_path / "group_vars" / "all", "from_all: plain\n")
    write(tmp_path / "group_vars" / "gpu" / "10-one.yml", "one: 1\nboth: one\n")
    write(tmp_path / "group_vars" / "gpu" / "20-two.json", '{"both": "two"}\n')
    write(tmp_path / "group_vars" / "gpu" / "notes.txt", "both: never\n")
    write(tmp_path / "host_vars" / "a.json", '{"mine": true}\n')
    variables = load_inventory(tmp_path).host("a").vars
    assert (variables["from_all"], variables["one"], variables["both"], variables["mine"]) == ("plain", 1, "two", True)


def test_a_vars_file_that_is_not_a_mapping_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "inv" / "hosts", "[gpu]\na\n")
    write(tmp_path / "inv" / "group_vars" / "gpu.yml", "- a list\n")
    with pytest.raises(InventoryError, match=r"^inv/group_vars/gpu.yml:1: a vars file must be a mapping"):
        load_inventory(tmp_path / "inv")


def test_magic_variables_describe_the_host_and_its_groups(tmp_path):
    write(tmp_path / "hosts", "[gpu]\nnode1.example.com\n[cpu]\n10.0.0.1\n")
    inventory = load_inventory(tmp_path)
    magic = inventory.host("node1.example.com").magic
    assert magic["inventory_hostname_short"] == "node1" and magic["group_names"] == ["gpu"]
    assert magic["groups"]["all"] == ["node1.example.com", "10.0.0.1"] and magic["groups"]["cpu"] == ["10.0.0.1"]
    assert magic["inventory_dir"] == str(tmp_path.resolve()) and magic["inventory_file"].endswith("/hosts")
    assert inventory.host("10.0.0.1").magic["inventory_hostname_short"] == "10.0.0.1"


def test_ini_host_lines_drop_trailing_comments_and_keep_equals_signs_in_values(tmp_path):
    write(tmp_path / "hosts.ini", """
        [gpu]
        node1 ansible_host=192.0.2.1 opts=a=b  # the first node
    """)
    host = load_inventory(tmp_path / "hosts.ini").host("node1")
    assert (host.address, host.vars["opts"]) == ("192.0.2.1", "a=b")


def test_vars_directories_are_read_in_name_order_into_subdirectories_skipping_hidden_and_backup_files(tmp_path):
    write(tmp_path / "inventory.yml", "all:\n  hosts: {a: }\n")
    write(tmp_path / "group_vars" / "all" / "b.yml", "order: b\n")
    write(tmp_path / "group_vars" / "all" / "a.yml", "order: a\nfrom_a: 1\n")
    write(tmp_path / "group_vars" / "all" / "more" / "c.yml", "deep: 3\n")
    write(tmp_path / "group_vars" / "all" / ".hidden.yml", "hidden: 1\n")
    write(tmp_path / "group_vars" / "all" / "zz~", "order: backup\n")  # an editor's backup of zz
    variables = load_inventory(tmp_path).host("a").vars
    assert (variables["order"], variables["from_a"], variables["deep"]) == ("b", 1, 3)
    assert "hidden" not in variables
