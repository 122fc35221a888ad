"""The lab's network on this machine: a bridge, and one network namespace with a veth per host."""

import os
import signal
import time
from pathlib import Path

from provision.lab.commands import LabError, run

BRIDGE = "provlab0"
NETWORK_PREFIX = "10.200.0"
BRIDGE_ADDRESS = f"{NETWORK_PREFIX}.1"
FIRST_HOST_OCTET = 11
LAST_HOST_OCTET = 250
NETNS_PREFIX = "provlab-"
LINK_PREFIX = "provlab"  # host-side veths are provlab<last octet>; the bridge is provlab0


def host_address(octet: int) -> str:
    return f"{NETWORK_PREFIX}.{octet}"


def netns_name(host: str) -> str:
    return NETNS_PREFIX + host


def link_name(octet: int) -> str:
    """The host-side veth of the host at NETWORK_PREFIX.octet (at most 15 characters)."""
    return f"{LINK_PREFIX}{octet}"


def _ip(*args: str, what: str, check: bool = True) -> str:
    return run(["ip", *args], what=what, check=check).stdout.decode()


def link_exists(link: str) -> bool:
    return Path("/sys/class/net", link).exists()


def ensure_bridge() -> None:
    """Create the bridge with BRIDGE_ADDRESS/24, up, unless it exists."""
    if link_exists(BRIDGE):
        return
    _ip("link", "add", BRIDGE, "type", "bridge", what="creating the lab bridge")
    _ip("addr", "add", f"{BRIDGE_ADDRESS}/24", "dev", BRIDGE, what="addressing the lab bridge")
    _ip("link", "set", BRIDGE, "up", what="bringing the lab bridge up")


def lab_netns() -> list[str]:
    """The names of the lab's network namespaces that exist now."""
    listing = _ip("netns", "list", what="listing network namespaces")
    names = (line.split()[0] for line in listing.splitlines() if line.strip())
    return [name for name in names if name.startswith(NETNS_PREFIX)]


def lab_links() -> list[str]:
    """The lab's links on this machine (bridge and host-side veths)."""
    return sorted(p.name for p in Path("/sys/class/net").iterdir() if p.name.startswith(LINK_PREFIX))


def create_host_network(host: str, octet: int) -> None:
    """A netns for `host` with eth0 at NETWORK_PREFIX.octet/24, routed via the bridge."""
    netns, link = netns_name(host), link_name(octet)
    what = f"lab host {host}: creating its network"
    delete_host_network(host, octet)
    _ip("netns", "add", netns, what=what)
    _ip("link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", netns, what=what)
    _ip("link", "set", link, "master", BRIDGE, "up", what=what)
    inside = ("-n", netns)
    _ip(*inside, "link", "set", "lo", "up", what=what)
    _ip(*inside, "addr", "add", f"{host_address(octet)}/24", "dev", "eth0", what=what)
    _ip(*inside, "link", "set", "eth0", "up", what=what)
    _ip(*inside, "route", "add", "default", "via", BRIDGE_ADDRESS, what=what)


def netns_pids(netns: str) -> list[int]:
    """The processes whose network namespace is `netns` (none when it does not exist)."""
    if not Path("/run/netns", netns).exists():
        return []
    listing = _ip("netns", "pids", netns, what=f"listing processes of {netns}", check=False)
    return [int(pid) for pid in listing.split()]


def kill_netns_processes(netns: str, timeout: float = 10) -> None:
    """SIGKILL every process in `netns` until none is left; LabError if some survive."""
    deadline = time.monotonic() + timeout
    while pids := netns_pids(netns):
        if time.monotonic() > deadline:
            raise LabError(f"{netns}: processes {pids} survive SIGKILL after {timeout:g} s")
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.02)


def delete_host_network(host: str, octet: int | None = None) -> None:
    """Remove `host`'s netns (killing what runs in it) and its veth; nothing if absent."""
    netns = netns_name(host)
    kill_netns_processes(netns)
    if Path("/run/netns", netns).exists():
        _ip("netns", "delete", netns, what=f"lab host {host}: deleting its netns")
    if octet is not None and link_exists(link_name(octet)):
        _ip("link", "delete", link_name(octet), what=f"lab host {host}: deleting its veth")


def delete_all() -> None:
    """Remove every lab netns (and what runs in it), veth and the bridge."""
    for netns in lab_netns():
        delete_host_network(netns.removeprefix(NETNS_PREFIX))
    for link in lab_links():
        _ip("link", "delete", link, what=f"deleting lab link {link}", check=False)


def set_link(octet: int, up: bool) -> None:
    """Bring the host-side veth of the host at `octet` up or down."""
    link = link_name(octet)
    _ip("link", "set", link, "up" if up else "down", what=f"setting {link} {'up' if up else 'down'}")
