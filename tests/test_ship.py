"""ship without hosts: the far-end scripts run by a local sh, the ssh command lines, the probe reader, the hash cache."""
import hashlib
import os
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml
from rich.console import Console

import provision.ship as ship_module
from provision.inventory import load_inventory
from provision.ship import NoRoomError, ShipError, ship
from provision.transfer.openssh import SshOptions, resolve_hop, sh_command, ssh_argv
from provision.transfer.remote import PROBE_SCRIPT, RECEIVE_SCRIPT, FileState, Probe, parse_probe
from provision.transfer.sources import HashCache, open_source

ODD = "a b 'q' \"d\" $(touch pwned) `touch pwned2`; -x.sif"
DF = "tmpfs 1024 0 1024 0% /home/u/my disk"


def receive(directory: Path, name: str, data: bytes, offset: int = 0, trailer: str | None = None,
            size: int | None = None) -> subprocess.CompletedProcess:
    """The receiver script under a local sh, fed `data` (the part past offset) and the sha256 line."""
    size = len(data) + offset if size is None else size
    command = sh_command(RECEIVE_SCRIPT, str(directory), name, "tag", str(size), str(offset), "openssl")
    stdin = data + (f"{trailer}\n".encode() if trailer is not None else b"")
    return subprocess.run(["sh", "-c", command], input=stdin, capture_output=True, cwd=directory)


def probe(directory: Path, name: str) -> Probe:
    done = subprocess.run(["sh", "-c", sh_command(PROBE_SCRIPT, str(directory), name, "tag")],
                          capture_output=True, text=True, check=True, cwd=directory)
    return parse_probe(done.stdout, "here")


def test_receiver_renames_only_after_the_sha256_matches(tmp_path):
    data = os.urandom(300_000)
    done = receive(tmp_path, ODD, data, trailer=hashlib.sha256(data).hexdigest())
    assert done.returncode == 0, done
    assert (tmp_path / ODD).read_bytes() == data
    assert not list(tmp_path.glob("pwned*"))
    assert probe(tmp_path, ODD).holds(hashlib.sha256(data).hexdigest())


def test_receiver_with_a_wrong_sha256_removes_the_partial_and_keeps_no_final_file(tmp_path):
    done = receive(tmp_path, "f.sif", b"x" * 1000, trailer="0" * 64)
    assert done.returncode == 6 and b"mismatch=" in done.stdout
    assert list(tmp_path.iterdir()) == []


def test_receiver_of_a_short_stream_keeps_the_partial_for_the_next_ship(tmp_path):
    done = receive(tmp_path, "f.sif", b"y" * 1000, size=5000)
    assert done.returncode == 5 and b"short=1000" in done.stdout
    assert not (tmp_path / "f.sif").exists()
    assert probe(tmp_path, "f.sif").partial == 1000


def test_receiver_resumes_from_the_offset_and_hashes_the_whole_file(tmp_path):
    data = os.urandom(10_000)
    receive(tmp_path, "f.sif", data[:4000], size=len(data))
    done = receive(tmp_path, "f.sif", data[4000:], offset=4000, trailer=hashlib.sha256(data).hexdigest())
    assert done.returncode == 0, done
    assert (tmp_path / "f.sif").read_bytes() == data


def test_probe_drops_partials_of_other_versions_and_reports_free_space(tmp_path):
    (tmp_path / ".f.sif.old.ship-part").write_bytes(b"old")
    (tmp_path / ".f.sif.tag.ship-part").write_bytes(b"mine")
    found = probe(tmp_path, "f.sif")
    assert found.partial == 4 and not (tmp_path / ".f.sif.old.ship-part").exists()
    assert found.free_bytes > 0 and found.directory == str(tmp_path.resolve())


def test_probe_reader_takes_mount_points_with_spaces_and_matches_the_sidecar():
    sha = "a" * 64
    found = parse_probe(f"final=5 7 9\nsidecar={sha} 5 7 9\nhasher=openssl\ndf={DF}\ndir=/d\n", "h")
    assert found.free_bytes == 1024 * 1024 and found.holds(sha) and found.may_hold(5)
    assert not found.holds("b" * 64) and not found.may_hold(6)
    touched = parse_probe(f"final=5 8 9\nsidecar={sha} 5 7 9\ndf={DF}\ndir=/d\n", "h")
    assert touched.final == FileState(5, 8, 9) and not touched.holds(sha)


def test_probe_reader_names_the_host_on_an_error_line():
    with pytest.raises(ShipError, match="hpc1:/x: directory /x is not writable"):
        parse_probe("error=directory /x is not writable\n", "hpc1:/x")


@pytest.fixture
def inventory(tmp_path):
    hosts = {"all": {"vars": {"ssh_key": "/keys/id%1"}, "children": {"hpc": {"hosts": {
        "hpc1": {"ansible_host": "10.0.0.5", "ansible_user": "u", "gateway": "gw1", "sif_dir": "/sif"},
        "gw1": {"ansible_host": "10.0.0.1", "ansible_port": 2222, "gateway": "jump@bastion:22"},
        "loop": {"gateway": "loop"}}}}}}
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(hosts))
    return load_inventory(tmp_path)


def test_gateways_become_nested_proxy_commands_with_escaped_tokens(inventory):
    argv = ssh_argv(resolve_hop(inventory.host("hpc1"), inventory), inventory, SshOptions(), "true")
    assert argv[-3:] == ["--", "10.0.0.5", "true"] and ["-l", "u"] == argv[argv.index("-l"):argv.index("-l") + 2]
    assert "IdentityFile=/keys/id%%1" in argv  # ssh reads %% as one %
    proxy = next(a for a in argv if a.startswith("ProxyCommand="))[len("ProxyCommand="):]
    outer = shlex.split(proxy)
    assert outer[-4:] == ["-W", "%h:%p", "--", "10.0.0.1"] and "2222" in outer
    inner = shlex.split(next(a for a in outer if a.startswith("ProxyCommand=")).replace("%%", "%")[len("ProxyCommand="):])
    assert inner[-4:] == ["-W", "%h:%p", "--", "bastion"] and inner[inner.index("-l") + 1] == "jump"


def test_a_gateway_loop_is_refused(inventory):
    with pytest.raises(ShipError, match="gateway chain longer"):
        resolve_hop(inventory.host("loop"), inventory)


def test_sources_are_local_unless_named_after_an_inventory_host(inventory, tmp_path, monkeypatch):
    (tmp_path / "x.sif").write_bytes(b"abc")
    local = open_source(str(tmp_path / "x.sif"), inventory, SshOptions())
    assert (local.name, local.size, local.builder_command) == ("x.sif", 3, None)
    assert local.sha256() == hashlib.sha256(b"abc").hexdigest()
    with pytest.raises(ShipError, match="cannot read it"):
        open_source(str(tmp_path / "missing.sif"), inventory, SshOptions())
    with pytest.raises(ShipError, match="no path after the builder"):
        open_source("gw1:", inventory, SshOptions())


def test_hash_cache_remembers_by_identity_and_survives_a_corrupt_file(tmp_path):
    cache = HashCache(tmp_path / "c" / "hashes.json")
    assert cache.get("k") is None
    cache.put("k", "s1")
    assert HashCache(cache.path).get("k") == "s1"
    cache.path.write_text("{not json")
    assert cache.get("k") is None


def test_no_room_is_refused_with_the_figures_and_nothing_streamed(inventory, tmp_path, monkeypatch):
    (tmp_path / "big.sif").write_bytes(b"z" * 4096)
    room = Probe("/sif", None, None, None, None, "openssl", 1024)
    monkeypatch.setattr(ship_module, "_probe", lambda *a: room)
    monkeypatch.setattr(ship_module, "_stream", lambda *a: pytest.fail("streamed although there is no room"))
    with pytest.raises(NoRoomError, match=r"hpc1: /sif has 1.0 KiB free \(1 KiB\), big.sif needs 4.0 KiB"):
        ship(str(tmp_path / "big.sif"), "hpc1", tmp_path, console=Console(quiet=True), hash_cache=tmp_path / "h.json")


def test_stream_sends_only_past_the_offset_and_stops_cleanly_when_the_far_end_dies(tmp_path):
    data = os.urandom(9 << 20)
    (tmp_path / "s.sif").write_bytes(data)
    source = open_source(str(tmp_path / "s.sif"), None, SshOptions())
    counter = [0]
    sha, sent, code, out, _ = ship_module._stream(source, 1 << 20, ["sh", "-c", f"cat > {shlex.quote(str(tmp_path))}/received"],
                                                  lambda n: counter.__setitem__(0, counter[0] + n))
    assert (sha, sent, code, counter[0]) == (hashlib.sha256(data).hexdigest(), 8 << 20, 0, 8 << 20)
    assert (tmp_path / "received").read_bytes() == data[1 << 20:] + sha.encode() + b"\n"
    sha, sent, code, out, _ = ship_module._stream(source, 0, ["sh", "-c", "head -c 1000 >/dev/null; exit 7"], lambda n: None)
    assert code == 7 and sent < len(data)


def _probe_answers(monkeypatch, answers: list[tuple[int, str]]) -> list[list[str]]:
    """The probe's ssh answers these (exit status, stderr) in turn, then a destination without room."""
    calls: list[list[str]] = []

    def run(argv, **kw):
        calls.append(argv)
        if answers:
            code, stderr = answers.pop(0)
            return subprocess.CompletedProcess(argv, code, "", stderr)
        return subprocess.CompletedProcess(argv, 0, f"hasher=openssl\ndf={DF}\ndir=/sif\n", "")
    monkeypatch.setattr(ship_module.subprocess, "run", run)
    monkeypatch.setattr(ship_module, "_stream", lambda *a: pytest.fail("streamed although there is no room"))
    return calls


def _ship_big(tmp_path, retries: int):
    (tmp_path / "big.sif").write_bytes(b"z" * (2 << 20))  # more than the 1 MiB the probe reports free
    return ship(str(tmp_path / "big.sif"), "hpc1", tmp_path, console=Console(quiet=True), hash_cache=tmp_path / "h.json",
                options=SshOptions(connect_retries=retries, retry_backoff=0.01))


def test_a_probe_that_cannot_connect_for_a_passing_reason_is_tried_again(inventory, tmp_path, monkeypatch):
    calls = _probe_answers(monkeypatch, [(255, "ssh: connect to host 10.0.0.5 port 22: No route to host"),
                                         (255, "kex_exchange_identification: read: Connection reset by peer")])
    with pytest.raises(NoRoomError):  # the third attempt got through to the far end
        _ship_big(tmp_path, retries=2)
    assert len(calls) == 3


def test_with_retries_off_a_failed_connect_fails_at_once(inventory, tmp_path, monkeypatch):
    calls = _probe_answers(monkeypatch, [(255, "ssh: connect to host 10.0.0.5 port 22: No route to host")])
    with pytest.raises(ship_module.LinkLostError, match="No route to host"):
        _ship_big(tmp_path, retries=0)
    assert len(calls) == 1


@pytest.mark.parametrize("stderr", ["Host key verification failed.", "u@10.0.0.5: Permission denied (publickey)."])
def test_host_key_and_authentication_failures_of_ship_are_never_retried(inventory, tmp_path, monkeypatch, stderr):
    calls = _probe_answers(monkeypatch, [(255, stderr)] * 3)
    with pytest.raises(ship_module.LinkLostError, match=stderr.split()[-1].rstrip(".")):
        _ship_big(tmp_path, retries=2)
    assert len(calls) == 1


@pytest.fixture
def local_ship(tmp_path, monkeypatch):
    """ship() whose ssh is a local sh: the real probe and receiver scripts, into tmp_path/far."""
    (tmp_path / "hosts").mkdir()
    (tmp_path / "hosts" / "inventory.yml").write_text(yaml.safe_dump(
        {"all": {"hosts": {"here": {"ansible_host": "127.0.0.1", "sif_dir": str(tmp_path / "far")}}}}))
    monkeypatch.setattr(ship_module, "ssh_argv", lambda hop, inventory, options, command=None, forward=None:
                        ["sh", "-c", command])

    def run(path):
        return ship(str(path), "here", tmp_path / "hosts", console=Console(quiet=True), hash_cache=tmp_path / "h.json")
    return run


def _interrupted(tmp_path, size: int, kept: int, tamper: bool = False) -> tuple[bytes, Path]:
    """A source of `size` bytes and, at the far end, the partial an interrupted ship of it left (`kept` bytes)."""
    data = os.urandom(size)
    (tmp_path / "img.sif").write_bytes(data)
    far = tmp_path / "far"
    far.mkdir(exist_ok=True)
    part = far / f".img.sif.{open_source(str(tmp_path / 'img.sif'), None, SshOptions()).tag}.ship-part"
    kept_bytes = bytearray(data[:kept])
    if tamper:
        kept_bytes[kept // 3] ^= 0xFF  # one byte in the middle of the kept part changed since it was written
    part.write_bytes(bytes(kept_bytes))
    return data, far


def test_a_resumed_ship_sends_only_the_rest_and_checks_the_whole_file(tmp_path, local_ship):
    data, far = _interrupted(tmp_path, 9 << 20, 5 << 20)
    result = local_ship(tmp_path / "img.sif")
    assert (result.resumed_from, result.bytes_sent) == (5 << 20, 4 << 20)
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert (far / "img.sif").read_bytes() == data
    assert sorted(p.name for p in far.iterdir()) == [".img.sif.ship", "img.sif"]  # no partial, sum or pid files left


def test_a_tampered_partial_is_detected_and_the_whole_file_sent_again(tmp_path, local_ship):
    data, far = _interrupted(tmp_path, 9 << 20, 5 << 20, tamper=True)
    result = local_ship(tmp_path / "img.sif")
    assert (result.resumed_from, result.bytes_sent) == (0, 9 << 20)
    assert (far / "img.sif").read_bytes() == data
    assert (far / ".img.sif.ship").read_text().split()[0] == hashlib.sha256(data).hexdigest()


def test_a_receiver_resuming_from_a_tampered_partial_renames_nothing(tmp_path):
    data = os.urandom(3 << 20)
    (tmp_path / ".x.sif.tag.ship-part").write_bytes(b"\0" * (1 << 20))
    done = receive(tmp_path, "x.sif", data[1 << 20:], offset=1 << 20, trailer=hashlib.sha256(data).hexdigest())
    assert done.returncode == 6 and b"mismatch=" in done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == []
