"""Ship a file (a .sif, usually) to a host's sif_dir over OpenSSH: resumable, verified by sha256, renamed only when whole.

The data goes through the OpenSSH client (aes-gcm first), not paramiko: it moves gigabytes at
two to three times paramiko's rate. The far end runs POSIX sh and coreutils only (remote.py).
"""
from __future__ import annotations

import hashlib
import queue
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                           TransferSpeedColumn)

from provision.inventory import Host, Inventory, load_inventory
from provision.errors import (KeptPartMismatchError, LinkLostError, NoRoomError, ShipError, TransientConnectError,
                              VerifyError)
from provision.retry import RetryPolicy, openssh_transient, policy_for, with_retries
from provision.transfer.openssh import Hop, SshOptions, resolve_hop, sh_command, ssh_argv
from provision.transfer.remote import (PROBE_SCRIPT, RECEIVE_SCRIPT, Probe, parse_probe,
                                       receiver_outcome)
from provision.transfer.sources import HashCache, Source, open_source

__all__ = ["ship", "ShipResult", "ShipError", "NoRoomError", "VerifyError", "LinkLostError"]

DEFAULT_SIF_DIR = "~/containers"  # where a host without a sif_dir variable receives images
PROBE_TIMEOUT = 60.0      # seconds for the probe (connect through every hop, stop stale receivers)
FINISH_TIMEOUT = 300.0    # seconds for the far end to hash the tail and rename once all is sent


@dataclass(frozen=True)
class ShipResult:
    """What a ship did: the path at the far end, the file's size and sha256, and the bytes it sent."""

    host: str
    path: str
    size: int
    sha256: str
    bytes_sent: int
    skipped: bool
    resumed_from: int
    seconds: float

    def summary(self) -> str:
        """One line for the CLI."""
        if self.skipped:
            return f"{self.host}:{self.path} unchanged (sha256 {self.sha256[:16]}…), nothing sent"
        rate = self.bytes_sent / self.seconds / 1e6 if self.seconds else 0.0
        resumed = f", resumed at {_size(self.resumed_from)}" if self.resumed_from else ""
        return (f"{self.host}:{self.path} {_size(self.size)} sha256 {self.sha256[:16]}… "
                f"sent {_size(self.bytes_sent)} in {self.seconds:.1f}s ({rate:.0f} MB/s{resumed})")


def ship(source: str, host: str, inventory_dir: Path, dest_dir: str | None = None,
         console: Console | None = None, hash_cache: Path | None = None,
         options: SshOptions = SshOptions()) -> ShipResult:
    """Put `source` (a local path or BUILDER:PATH) into `dest_dir` (default: the host's sif_dir) on `host`.

    Guarantees: the final name only ever holds a complete file whose sha256 matched the sender's;
    no byte is sent when the destination lacks room for what is missing; an interrupted ship
    leaves its partial file for the next one, which sends only the rest; an unchanged file sends
    nothing. Raises NoRoomError, LinkLostError, VerifyError or ShipError.
    """
    started = time.monotonic()
    inventory = load_inventory(Path(inventory_dir))
    target = inventory.host(host)
    policy = policy_for(target, RetryPolicy(options.connect_retries, options.retry_backoff))
    console = console or Console(stderr=True, emoji=False)

    def retrying(attempt: int, delay: float, exc: Exception) -> None:
        console.print(f"{host}: connect attempt {attempt} failed, again in {delay:g}s: {exc}", style="yellow",
                      markup=False, highlight=False)

    def once() -> ShipResult:
        try:
            return _ship_once(source, target, inventory, dest_dir, console, hash_cache, options, started)
        except KeptPartMismatchError as exc:  # the far end removed the bad part: the probe now finds none
            console.print(f"{exc}; sending the whole file", style="yellow", markup=False, highlight=False)
            return _ship_once(source, target, inventory, dest_dir, console, hash_cache, options, started)

    try:  # a connect that fails for a passing reason starts over from the probe, which finds what arrived
        return with_retries(once, policy, retrying)
    except TransientConnectError as exc:
        raise LinkLostError(str(exc)) from None


def _ship_once(source: str, target: Host, inventory: Inventory, dest_dir: str | None, console: Console,
               hash_cache: Path | None, options: SshOptions, started: float) -> ShipResult:
    host = target.name
    hop = resolve_hop(target, inventory)
    directory = str(dest_dir or target.vars.get("sif_dir") or DEFAULT_SIF_DIR)
    cache = HashCache(hash_cache or HashCache.default_path())
    src = open_source(source, inventory, options)
    known = cache.get(src.identity)

    probe = _probe(hop, inventory, options, directory, src)
    final_path = f"{probe.directory.rstrip('/')}/{src.name}"
    if probe.may_hold(src.size):
        if known is None:
            known = src.sha256()
            cache.put(src.identity, known)
        if probe.holds(known):
            return ShipResult(host, final_path, src.size, known, 0, True, 0, time.monotonic() - started)

    offset = probe.partial if probe.partial is not None and probe.partial <= src.size else 0
    missing = src.size - offset
    if missing > probe.free_bytes:
        raise NoRoomError(
            f"{host}: {probe.directory} has {_size(probe.free_bytes)} free ({probe.free_bytes // 1024} KiB), "
            f"{src.name} needs {_size(missing)} more ({missing // 1024} KiB of {src.size // 1024} KiB); nothing was sent")

    argv = ssh_argv(hop, inventory, options, sh_command(
        RECEIVE_SCRIPT, directory, src.name, src.tag, str(src.size), str(offset), probe.hasher))
    with _progress_bar(console) as progress:
        task = progress.add_task(f"{src.name} → {host}", total=src.size, completed=offset)
        sha256, sent, returncode, output, errors = _stream(src, offset, argv, lambda n: progress.advance(task, n))
    _check_outcome(host, src, final_path, offset, sent, sha256, returncode, output, errors, options)
    cache.put(src.identity, sha256)
    return ShipResult(host, final_path, src.size, sha256, sent, False, offset, time.monotonic() - started)


def _probe(hop: Hop, inventory: Inventory, options: SshOptions, directory: str, src: Source) -> Probe:
    argv = ssh_argv(hop, inventory, options, sh_command(PROBE_SCRIPT, directory, src.name, src.tag))
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=PROBE_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise LinkLostError(f"{hop.label} ({hop.address}): no answer within {PROBE_TIMEOUT:g}s") from None
    if done.returncode == 255:
        kind = TransientConnectError if openssh_transient(done.returncode, done.stderr) else LinkLostError
        raise kind(f"{hop.label} ({hop.address}): ssh failed: {_tail(done.stderr)}")
    probe = parse_probe(done.stdout, f"{hop.label}:{directory}")
    if done.returncode != 0:
        raise ShipError(f"{hop.label}:{directory}: probe exited {done.returncode}: {_tail(done.stderr)}")
    return probe


def _stream(src: Source, offset: int, argv: list[str], advance) -> tuple[str, int, int, str, str]:
    """Send what lies past `offset` and then the sha256 line of the whole source.

    Returns (sha256, bytes sent, ssh exit status, its stdout, its stderr). Reading and hashing run
    in this thread, writing to ssh in another, so the two overlap. Resuming from a local file, the
    whole file is hashed in a third thread while the missing part is read and sent: the kept part
    costs no time on the wire (hashing runs at disk speed, far faster than the link).
    """
    process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    output: dict[str, bytes] = {}
    readers = [threading.Thread(target=lambda n=n, s=s: output.__setitem__(n, s.read()), daemon=True)
               for n, s in (("out", process.stdout), ("err", process.stderr))]
    for reader in readers:
        reader.start()
    writer = _Writer(process, advance)
    writer.start()
    whole = _WholeFileHash(src) if offset and src.builder_command is None else None
    digest, position = hashlib.sha256(), offset if whole else 0
    try:
        for chunk in src.chunks(offset) if whole else src.chunks():
            if whole is None:
                digest.update(chunk)
            end = position + len(chunk)
            if end > offset and not writer.put(chunk[max(0, offset - position):]):
                break
            position = end
        else:
            sha256 = whole.hexdigest() if whole else digest.hexdigest()
            writer.put(sha256.encode() + b"\n", counted=False)
        writer.finish()
        try:
            process.wait(timeout=FINISH_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        writer.finish()
        for reader in readers:
            reader.join(timeout=5)
    return (whole.hexdigest() if whole else digest.hexdigest(), writer.sent, process.returncode,
            output.get("out", b"").decode(errors="replace"), output.get("err", b"").decode(errors="replace"))


class _WholeFileHash(threading.Thread):
    """The sha256 of a whole local file, computed in the background (hashlib releases the GIL on big blocks)."""

    def __init__(self, src: Source):
        super().__init__(daemon=True)
        self.src, self.error, self._digest = src, None, hashlib.sha256()
        self.start()

    def run(self) -> None:
        try:
            for chunk in self.src.chunks():
                self._digest.update(chunk)
        except ShipError as exc:
            self.error = exc

    def hexdigest(self) -> str:
        self.join()
        if self.error:
            raise self.error
        return self._digest.hexdigest()


class _Writer(threading.Thread):
    """Writes queued chunks to ssh's stdin; stops at the first failed write (ssh gone)."""

    def __init__(self, process: subprocess.Popen, advance):
        super().__init__(daemon=True)
        self.process, self.advance = process, advance
        self.chunks: queue.Queue = queue.Queue(maxsize=4)
        self.sent, self.failed = 0, False

    def run(self) -> None:
        while (item := self.chunks.get()) is not None:
            data, counted = item
            try:
                view = memoryview(data)
                while view:
                    written = self.process.stdin.write(view)
                    view = view[written:]
                    if counted:
                        self.sent += written
                        self.advance(written)
            except OSError:  # BrokenPipeError: ssh exited (link lost, far end failed)
                self.failed = True
                self._drain()
                return
        try:
            self.process.stdin.close()
        except OSError:
            self.failed = True

    def _drain(self) -> None:
        while self.chunks.get() is not None:
            continue

    def put(self, data: bytes, counted: bool = True) -> bool:
        """Queue data for ssh; False once writing has failed (the caller stops reading)."""
        while not self.failed:
            try:
                self.chunks.put((data, counted), timeout=0.5)
                return True
            except queue.Full:
                continue
        return False

    def finish(self) -> None:
        """Close ssh's stdin once everything queued is written; wait for that."""
        if self.is_alive():
            self.chunks.put(None)
            self.join()


def _check_outcome(host: str, src: Source, final_path: str, offset: int, sent: int, sha256: str,
                   returncode: int, output: str, errors: str, options: SshOptions) -> None:
    outcome = receiver_outcome(output)
    if returncode == 0 and outcome.get("ok") == sha256:
        return
    where = f"{host}:{final_path}"
    if not outcome and openssh_transient(returncode, errors):  # ssh never reached the receiver: nothing arrived
        raise TransientConnectError(f"{where}: ssh failed before sending: {_tail(errors)}")
    if "mismatch" in outcome and offset:
        raise KeptPartMismatchError(f"{where}: the {_size(offset)} kept from an earlier ship did not match the source "
                                    f"(sha256 of the whole file {outcome['mismatch']}, sender's {sha256}); it was removed")
    if "mismatch" in outcome:
        raise VerifyError(f"{where}: sha256 at the far end {outcome['mismatch']} differs from the sender's "
                          f"{sha256}; the partial file was removed, nothing renamed; ship again")
    if returncode == 255 or "short" in outcome or returncode < 0:
        kept = offset + sent if "short" not in outcome else int(outcome["short"])
        raise LinkLostError(f"{where}: link lost after sending {_size(sent)} of {_size(src.size - offset)} "
                            f"(ssh gives up after {options.link_timeout:g}s of silence): {_tail(errors) or 'no message'}; "
                            f"about {_size(kept)} kept as a partial file, ship again to send the rest")
    raise ShipError(f"{where}: the receiver exited {returncode}: {outcome.get('error') or _tail(errors) or output.strip()}")


def _progress_bar(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                    TimeRemainingColumn(), console=console, transient=False)


def _tail(text: str, lines: int = 3) -> str:
    return " | ".join(text.strip().splitlines()[-lines:])


def _size(count: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GiB"
