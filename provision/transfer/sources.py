"""What a ship reads: a file on this machine or `BUILDER:PATH` streamed from a builder's ssh, and a cache of their sha256."""
from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

from provision.inventory import Inventory
from provision.errors import ShipError, TransientConnectError
from provision.pipeline.builddir import build_dir
from provision.retry import openssh_transient
from provision.transfer.openssh import SshOptions, resolve_hop, sh_command, ssh_argv

CHUNK = 4 << 20  # bytes per read: large enough that the per-call costs vanish against hashing
CACHE_ENTRIES = 500


@dataclass(frozen=True)
class Source:
    """One file to ship: how to name it, where it is, and what identifies its version."""

    label: str      # as the user wrote it, for messages
    name: str       # the base name it gets at the destination
    size: int
    identity: str   # origin, path, size and mtime: the hash cache key and the partial's tag
    path: str
    builder_command: list[str] | None = None  # ssh argv prefix reaching the builder, None for local

    @property
    def tag(self) -> str:
        """A short name for this version of the source, part of the partial file's name."""
        return hashlib.sha256(self.identity.encode()).hexdigest()[:12]

    def chunks(self, start: int = 0) -> Iterator[bytes]:
        """The file's bytes from `start` (a local file; a builder's from 0), CHUNK at a time; ShipError when the read fails."""
        if self.builder_command is None:
            with open(self.path, "rb") as stream:
                stream.seek(start)
                yield from _read_all(stream, self.size - start, self.label)
            return
        if start:
            raise ShipError(f"{self.label}: a builder's file is read from its start")
        command = self.builder_command + [sh_command('exec cat -- "$1"', self.path)]
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            yield from _read_all(process.stdout, self.size, self.label)
        finally:
            process.stdout.close()
            process.kill()
            process.wait()

    def sha256(self) -> str:
        """The source's sha256, computed where it lies (openssl or sha256sum on a builder)."""
        if self.builder_command is None:
            digest = hashlib.sha256()
            for chunk in self.chunks():
                digest.update(chunk)
            return digest.hexdigest()
        script = '{ openssl dgst -sha256 -r -- "$1" 2>/dev/null || sha256sum -- "$1"; } | head -n 1'
        done = _run(self.builder_command + [sh_command(script, self.path)], self.label)
        return done.split()[0] if done.split() else ""


def _read_all(stream: BinaryIO, size: int, label: str) -> Iterator[bytes]:
    left = size
    while left:
        chunk = stream.read(min(CHUNK, left))
        if not chunk:
            raise ShipError(f"{label}: ended after {size - left} of {size} bytes (changed while shipping?)")
        left -= len(chunk)
        yield chunk


def _run(argv: list[str], label: str) -> str:
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600)
    if openssh_transient(done.returncode, done.stderr):  # the builder did not answer yet: ship tries again
        raise TransientConnectError(f"{label}: ssh failed: {done.stderr.strip()[-300:]}")
    if done.returncode != 0:
        raise ShipError(f"{label}: {shlex.join(argv[-1:])} failed with exit {done.returncode}: "
                        f"{done.stderr.strip()[-300:]}")
    return done.stdout


def open_source(source: str, inventory: Inventory, options: SshOptions) -> Source:
    """A local file, or `BUILDER:PATH` when BUILDER is an inventory host and no local file has that name.

    PATH is absolute, relative to the builder's home, or a bare name in its build_dir (NAME.sif).
    """
    builder, sep, remote_path = source.partition(":")
    if sep and builder in inventory.host_vars and not os.path.exists(source):
        if not remote_path:
            raise ShipError(f"{source}: no path after the builder name")
        if "/" not in remote_path:  # a bare file name is in the builder's build_dir
            remote_path = f"{build_dir(inventory.host(builder)).rstrip('/')}/{remote_path}"
        if remote_path.startswith("~/"):
            remote_path = remote_path[2:]  # ssh runs commands in the home directory
        hop = resolve_hop(inventory.host(builder), inventory)
        prefix = ssh_argv(hop, inventory, options)
        stat = _run(prefix + [sh_command('exec stat -L -c "%s %Y %i" -- "$1"', remote_path)], source).split()
        if len(stat) != 3:
            raise ShipError(f"{source}: cannot read its size on {builder}: {' '.join(stat)!r}")
        size, mtime, inode = map(int, stat)
        identity = f"{builder}@{hop.address}:{remote_path}:{size}:{mtime}:{inode}"
        return Source(source, _base_name(remote_path, source), size, identity, remote_path, prefix)
    return local_source(source)


def local_source(source: str) -> Source:
    """A file on this machine, identified by path, size, mtime and inode."""
    path = Path(source).expanduser()
    try:
        stat = path.stat()
    except OSError as exc:
        raise ShipError(f"{source}: cannot read it: {exc.strerror}") from None
    if not path.is_file():
        raise ShipError(f"{source}: not a regular file")
    identity = f"local:{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ino}"
    return Source(source, _base_name(str(path), source), stat.st_size, identity, str(path))


def local_sha256(source: str) -> str:
    """A local file's sha256, from ship's hash cache when this version was hashed before."""
    src = local_source(source)
    cache = HashCache(HashCache.default_path())
    known = cache.get(src.identity)
    if known is None:
        known = src.sha256()
        cache.put(src.identity, known)
    return known


def _base_name(path: str, label: str) -> str:
    name = path.rstrip("/").rsplit("/", 1)[-1]
    if name in ("", ".", "..") or "\n" in name or "\0" in name:
        raise ShipError(f"{label}: {name!r} cannot be a file name at the destination")
    return name


class HashCache:
    """sha256 of sources by identity (origin, path, size, mtime), so a re-ship hashes nothing."""

    def __init__(self, path: Path):
        self.path = path

    @staticmethod
    def default_path() -> Path:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        return Path(base) / "provision" / "ship-sha256.json"

    def _load(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def get(self, identity: str) -> str | None:
        return self._load().get(identity)

    def put(self, identity: str, sha256: str) -> None:
        """Record the hash (the newest CACHE_ENTRIES are kept); a cache that cannot be written is skipped."""
        data = self._load()
        data.pop(identity, None)
        data[identity] = sha256
        kept = dict(list(data.items())[-CACHE_ENTRIES:])
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_suffix(f".{os.getpid()}.tmp")
            temporary.write_text(json.dumps(kept, indent=0))
            temporary.replace(self.path)
        except OSError:
            return
