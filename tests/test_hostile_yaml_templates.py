"""Hostile YAML and templates are refused at load: duplicate keys, alias bombs, !vault, sandbox escapes."""
from __future__ import annotations

import json

import pytest

from provision.cli import prepare
from provision.errors import InventoryError, ProvisionError
from provision.yamlfile import parse_yaml
from tests.helpers import roles_with, write

BOMB = "".join(f"{b}: &{b} [{','.join([f'*{a}'] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi"))
BOMB = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + BOMB


def test_alias_bomb_is_refused_before_it_expands():
    with pytest.raises(InventoryError) as error:
        parse_yaml(BOMB, "group_vars/all.yml", InventoryError)
    assert str(error.value) == ("group_vars/all.yml: refused: its aliases expand to more than 100,000 values "
                                "(an alias bomb?)")


def test_ordinary_aliases_and_merge_keys_still_load():
    data = parse_yaml("base: &b {port: 22, user: ops}\nweb:\n  <<: *b\n  port: 2222\nlist: [*b, *b]\n", "x.yml", InventoryError)
    assert data == {"base": {"port": 22, "user": "ops"}, "web": {"port": 2222, "user": "ops"},
                    "list": [{"port": 22, "user": "ops"}] * 2}


def test_duplicate_keys_name_both_lines():
    text = "all:\n  children:\n    web:\n      hosts: {a: {}}\n    web:\n      hosts: {b: {}}\n"
    with pytest.raises(InventoryError) as error:
        parse_yaml(text, "hosts/inventory.yml", InventoryError)
    assert str(error.value) == ("hosts/inventory.yml:5:5: duplicate key 'web' (first at line 3): "
                                "YAML keeps only one of them")


def test_a_task_with_two_whens_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "hosts" / "inventory.yml", "all:\n  hosts:\n    t: {ansible_host: 192.0.2.1, roles: [two]}\n")
    tasks = "- name: Twice\n  when: false\n  file: {path: /tmp/x, content: x}\n  when: true\n"
    roles = roles_with(tmp_path, {"two": {"tasks.yml": tasks}})
    with pytest.raises(ProvisionError) as error:
        prepare(tmp_path / "hosts", "t", None, None, {}, roles)
    assert str(error.value).startswith("roles/two/tasks.yml:4:3: duplicate key 'when' (first at line 2)")


def test_vault_says_it_is_unsupported_and_what_to_use():
    with pytest.raises(InventoryError) as error:
        parse_yaml("key: !vault |\n  $ANSIBLE_VAULT;1.1;AES256\n  6231\n", "host_vars/h.yml", InventoryError)
    message = str(error.value)
    assert message.startswith("host_vars/h.yml:1:6: Ansible Vault (!vault) is not supported")
    assert "{secret_env: NAME}" in message and "{secret_file: PATH}" in message


ESCAPES = [
    "{{ lipsum.__globals__['os'].popen('touch PLANTED').read() }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.popen('touch PLANTED').read() }}",
    "{{ self._TemplateReference__context }}",
    "{% for x in [].__class__.__base__.__subclasses__() %}{{ x }}{% endfor %}",
]


@pytest.mark.parametrize("escape", ESCAPES)
def test_template_escapes_in_inventory_values_are_refused_and_run_nothing(tmp_path, monkeypatch, escape):
    monkeypatch.chdir(tmp_path)
    inventory = write(tmp_path / "hosts" / "inventory.yml",
                      "all:\n  hosts:\n    t: {ansible_host: 192.0.2.1, roles: [helper_tools]}\n")
    write(tmp_path / "hosts" / "host_vars" / "t.yml", f"helper_tools_extra: [{json.dumps(escape)}]\n")
    roles = roles_with(tmp_path)
    assert inventory.exists()
    with pytest.raises(ProvisionError) as error:
        prepare(tmp_path / "hosts", "t", None, None, {}, roles)
    message = str(error.value)
    assert message.startswith("variable 'helper_tools_extra' for host t: ")
    assert "refused by the template sandbox" in message or "is undefined" in message
    assert not (tmp_path / "PLANTED").exists()
