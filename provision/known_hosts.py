"""known_hosts read once per version of the file: each hop gets its own host's keys by name, not a parse of every line."""

from __future__ import annotations

import threading
from pathlib import Path

from paramiko.hostkeys import HostKeyEntry, HostKeys

_SSH_PORT = 22


class KnownHosts:
    """The lines of one known_hosts file by host name (hashed names kept apart); keys parsed on lookup."""

    def __init__(self, text: str):
        self.plain: dict[str, list[str]] = {}
        self.hashed: list[tuple[str, str]] = []  # (|1|salt|hash, line)
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            for name in line.split(None, 1)[0].split(","):
                if name.startswith("|1|"):
                    self.hashed.append((name, line))
                else:
                    self.plain.setdefault(name, []).append(line)

    def entries(self, name: str) -> list[HostKeyEntry]:
        """The entries that vouch for NAME (`host`, or `[host]:port` off port 22), as paramiko's HostKeys.lookup matches."""
        lines = list(self.plain.get(name, ()))
        lines += [line for hashed, line in self.hashed if HostKeys.hash_host(name, hashed) == hashed]
        parsed = (HostKeyEntry.from_line(line) for line in lines)
        return [entry for entry in parsed if entry is not None and entry.key is not None]


_cache: dict[Path, tuple[tuple[int, int, int], KnownHosts]] = {}
_cache_lock = threading.Lock()


def known_hosts(path: Path) -> KnownHosts:
    """PATH parsed once for as long as it is the same file (inode, size and mtime); empty if missing."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return KnownHosts("")
    signature = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
    with _cache_lock:
        cached = _cache.get(path)
        if cached and cached[0] == signature:
            return cached[1]
        parsed = KnownHosts(path.read_text(errors="replace"))
        _cache[path] = (signature, parsed)
        return parsed


def load_for(host_keys: HostKeys, path: Path, host: str, port: int | None) -> None:
    """Add to HOST_KEYS what PATH says of HOST:PORT, under the name paramiko's SSHClient looks it up by."""
    name = host if (port or _SSH_PORT) == _SSH_PORT else f"[{host}]:{port}"
    for entry in known_hosts(path).entries(name):
        host_keys.add(name, entry.key.get_name(), entry.key)
