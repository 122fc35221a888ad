"""Every variable of every shipped role, and every inventory name, set to a hostile value: refused at load, naming it."""
from __future__ import annotations

import pytest

from provision.cli import ROLES_DIR, prepare
from provision.errors import ProvisionError
from provision.roles import available_roles, load_roles
from tests.helpers import write

PAYLOADS = [
    "$(touch /PWN)", "`touch /PWN`", "x'; touch /PWN; '", 'x"; touch /PWN; "', "x\ntouch /PWN",
    "-oAPT::Update::Pre-Invoke::=touch /PWN", "x;touch /PWN", "http://h/x\nAPT::Update::Pre-Invoke {\"touch /PWN\";};",
    "/var/lib/x\nLD_PRELOAD=/tmp/x.so",
]
BUILDER = ["base", "helper_tools", "aws_cli", "nvidia_driver", "docker_ce", "nvidia_container_toolkit", "apptainer", "ngc_login", "verify"]
INVENTORY = """
    all:
      hosts:
        t: {ansible_host: 192.0.2.1, roles: [%s]}
""" % ", ".join(BUILDER)


def every_role_variable() -> list[str]:
    assert set(BUILDER) <= set(available_roles(ROLES_DIR)), "the builder stack is every shipped role"
    return [name for role in load_roles(ROLES_DIR, available_roles(ROLES_DIR)) for name in role.defaults]


@pytest.fixture
def inventory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NGC_API_KEY", "k")
    write(tmp_path / "hosts" / "inventory.yml", INVENTORY)
    return tmp_path / "hosts"


@pytest.mark.parametrize("variable", every_role_variable())
def test_every_role_variable_refuses_every_hostile_value_naming_itself(inventory, variable):
    for payload in PAYLOADS:
        with pytest.raises(ProvisionError) as error:
            prepare(inventory, "t", None, None, {variable: payload}, ROLES_DIR)
        message = str(error.value)
        assert f"variable {variable}: {payload!r} is not " in message, message
        assert "\n" not in message
    with pytest.raises(ProvisionError) as error:
        prepare(inventory, "t", None, None, {variable: ["ok", "$(touch /PWN)"]}, ROLES_DIR)
    assert f"variable {variable}: " in str(error.value)


@pytest.mark.parametrize("where", ["host", "group", "gateway", "ansible_user", "ansible_host"])
@pytest.mark.parametrize("payload", PAYLOADS)
def test_hostile_names_in_the_inventory_are_refused_at_load(tmp_path, monkeypatch, where, payload):
    monkeypatch.chdir(tmp_path)
    quoted = '"' + payload.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    host, group, variables = "t", "web", {"ansible_host": "192.0.2.1"}
    if where == "host":
        host = quoted
    elif where == "group":
        group = quoted
    else:
        variables[where] = quoted
    pairs = ", ".join(f"{k}: {v}" for k, v in variables.items())
    write(tmp_path / "hosts" / "inventory.yml",
          f"all:\n  children:\n    {group}:\n      hosts:\n        {host}: {{{pairs}, roles: [base]}}\n")
    with pytest.raises(ProvisionError) as error:
        prepare(tmp_path / "hosts", None, "all", None, {}, ROLES_DIR)
    message = str(error.value)
    assert message.startswith("hosts/inventory.yml:"), message
    assert repr(payload) in message and "\n" not in message
