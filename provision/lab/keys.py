"""SSH keys of the lab: the client key that logs in everywhere, and each host's own host key."""

from pathlib import Path

from provision.lab.commands import run


def ensure_client_key(path: Path) -> str:
    """Generate the ed25519 client key at `path` unless it exists; return its public line."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "provision-lab", "-f", str(path)],
            what=f"generating the lab client key {path}")
    return path.with_name(path.name + ".pub").read_text().strip()


def generate_host_key(root: Path, host: str) -> str:
    """A fresh ed25519 host key in `root`/etc/ssh; return its public line."""
    key = root / "etc/ssh/ssh_host_ed25519_key"
    for old in (key, key.with_name(key.name + ".pub")):
        old.unlink(missing_ok=True)
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{host}", "-f", str(key)],
        what=f"lab host {host}: generating its host key")
    return key.with_name(key.name + ".pub").read_text().strip()


def known_hosts_line(address: str, host_public_key: str) -> str:
    """The known_hosts line vouching for `host_public_key` at `address` (comment dropped)."""
    key_type, key_data = host_public_key.split()[:2]
    return f"{address} {key_type} {key_data}\n"
