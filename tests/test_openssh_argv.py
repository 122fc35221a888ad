"""ship's ssh command lines as OpenSSH itself reads them (`ssh -G`, which resolves options and connects nowhere)."""
import shlex
import shutil
import subprocess

import pytest
import yaml

from provision.errors import ShipError
from provision.inventory import load_inventory
from provision.transfer.openssh import CIPHERS, SshOptions, resolve_hop, sh_command, ssh_argv

pytestmark = pytest.mark.skipif(shutil.which("ssh") is None, reason="needs the OpenSSH client")


@pytest.fixture
def inventory(tmp_path):
    """Inventory in a directory whose name holds a `%` (ssh expands tokens in paths); hpc1 behind a user@host:port gateway."""
    base = tmp_path / "in%dir"
    base.mkdir()
    key = tmp_path / "id%key"
    key.write_text("not a real key\n")
    hosts = {"all": {"hosts": {
        "hpc1": {"ansible_host": "10.0.0.5", "ansible_user": "u", "ansible_port": 2222, "ssh_key": str(key),
                 "gateway": "jump@bastion:2200"},
        "plain": {"ansible_host": "10.0.0.6"}}}}
    (base / "inventory.yml").write_text(yaml.safe_dump(hosts))
    return load_inventory(base)


def resolved(argv: list[str]) -> dict[str, list[str]]:
    """What ssh would do with `argv`: `ssh -G`'s option lines (no user or system config read)."""
    done = subprocess.run([argv[0], "-F", "/dev/null", "-G", *argv[1:]], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    options: dict[str, list[str]] = {}
    for line in done.stdout.splitlines():
        name, _, value = line.partition(" ")
        options.setdefault(name, []).append(value)
    return options


def test_ship_connects_in_batch_mode_with_strict_host_keys_from_the_inventory_known_hosts(inventory):
    argv = ssh_argv(resolve_hop(inventory.host("plain"), inventory), inventory, SshOptions(), "true")
    got = resolved(argv)
    assert argv[-3:] == ["--", "10.0.0.6", "true"]
    assert got["hostname"] == ["10.0.0.6"]
    assert got["batchmode"] == ["yes"] and got["stricthostkeychecking"] == ["true"]
    assert got["userknownhostsfile"] == [str(inventory.known_hosts)] and inventory.known_hosts.name == "known_hosts"
    assert got["globalknownhostsfile"] == ["/dev/null"]
    assert got["controlmaster"] == ["false"] and "controlpath" not in got  # no shared master connection
    assert got["requesttty"] == ["false"] and got["forwardx11"] == ["no"] and got["forwardagent"] == ["no"]
    assert got["loglevel"] == ["ERROR"] and got["ciphers"] == [CIPHERS]
    assert "proxycommand" not in got


def test_ship_waits_as_long_as_its_options_say_before_giving_up_on_a_host(inventory):
    options = SshOptions(connect_timeout=7, alive_interval=3, alive_count=5)
    got = resolved(ssh_argv(resolve_hop(inventory.host("plain"), inventory), inventory, options))
    assert (got["connecttimeout"], got["serveraliveinterval"], got["serveralivecountmax"]) == (["7"], ["3"], ["5"])


def test_the_host_key_user_and_port_reach_ssh_and_the_gateway_gets_its_own(inventory):
    argv = ssh_argv(resolve_hop(inventory.host("hpc1"), inventory), inventory, SshOptions())
    got = resolved(argv)
    key = str(inventory.host("hpc1").ssh_key).replace("%", "%%")  # -G prints it before expanding %% to %
    assert (got["user"], got["port"], got["identityfile"], got["identitiesonly"]) == (["u"], ["2222"], [key], ["yes"])
    proxy = shlex.split(got["proxycommand"][0].replace("%%", "%"))  # ssh expands %% in a ProxyCommand it runs
    gateway = resolved(proxy[:proxy.index("-W")] + proxy[proxy.index("--"):])
    assert (gateway["hostname"], gateway["user"], gateway["port"]) == (["bastion"], ["jump"], ["2200"])
    assert gateway["identityfile"] == [key]  # a user@host:port gateway logs in with the host's key
    assert proxy[proxy.index("-W") + 1] == "%h:%p"


def test_a_remote_command_gets_its_arguments_as_positional_parameters():
    command = sh_command('printf "%s|" "$0" "$@"', "a b", "$(x)")
    done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True)
    assert done.stdout == "ship|a b|$(x)|"


def test_a_chain_of_four_gateways_is_followed_and_a_fifth_is_refused(tmp_path):
    chain = {f"g{i}": {"ansible_host": f"10.0.1.{i}", "gateway": f"g{i + 1}"} for i in range(5)}
    chain["g5"] = {"ansible_host": "10.0.1.5"}
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump({"all": {"hosts": chain}}))
    inventory = load_inventory(tmp_path)
    hop, addresses = resolve_hop(inventory.host("g1"), inventory), []
    while hop:
        addresses.append(hop.address)
        hop = hop.gateway
    assert addresses == ["10.0.1.1", "10.0.1.2", "10.0.1.3", "10.0.1.4", "10.0.1.5"]
    with pytest.raises(ShipError, match="g5: gateway chain longer than 4 hops"):
        resolve_hop(inventory.host("g0"), inventory)
