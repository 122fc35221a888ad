"""What ship reads (builder files over a stand-in ssh, local files, the hash cache) and how it reads the far end's answers."""
import hashlib
import os

import pytest
import yaml

from provision.errors import ShipError, TransientConnectError
from provision.inventory import load_inventory
from provision.transfer import sources
from provision.transfer.openssh import SshOptions
from provision.transfer.remote import parse_probe, receiver_outcome
from provision.transfer.sources import HashCache, local_sha256, local_source, open_source

DF = "df=tmpfs 1024 0 1024 0% /far"

# Runs the remote command (ssh's last argument) with sh in $HOME, as ssh does on the far end.
FAKE_SSH = """#!/bin/sh
printf '%s\\n' "$*" >> "$SSH_CALLS"
for last; do :; done
cd "$HOME" && exec sh -c "$last"
"""


@pytest.fixture
def builder(tmp_path, monkeypatch):
    """An inventory with builder b1 (build_dir tmp_path/builds) whose ssh is a local sh; returns the inventory."""
    bin_dir, home = tmp_path / "bin", tmp_path / "home"
    bin_dir.mkdir()
    home.mkdir()
    (bin_dir / "ssh").write_text(FAKE_SSH)
    (bin_dir / "ssh").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("SSH_CALLS", str(tmp_path / "ssh-calls"))
    (tmp_path / "builds").mkdir()
    (tmp_path / "hosts").mkdir()
    (tmp_path / "hosts" / "inventory.yml").write_text(yaml.safe_dump({"all": {"hosts": {
        "b1": {"ansible_host": "10.0.0.9", "ansible_user": "bob", "build_dir": str(tmp_path / "builds")}}}}))
    return load_inventory(tmp_path / "hosts")


def test_a_bare_builder_file_name_is_read_from_its_build_dir_over_ssh(builder, tmp_path):
    data = os.urandom(5000)
    (tmp_path / "builds" / "x.sif").write_bytes(data)
    source = open_source("b1:x.sif", builder, SshOptions())
    stat = (tmp_path / "builds" / "x.sif").stat()
    assert (source.label, source.name, source.size, source.path) == ("b1:x.sif", "x.sif", 5000, f"{tmp_path}/builds/x.sif")
    assert source.identity == f"b1@10.0.0.9:{tmp_path}/builds/x.sif:5000:{int(stat.st_mtime)}:{stat.st_ino}"
    assert b"".join(source.chunks()) == data
    assert source.sha256() == hashlib.sha256(data).hexdigest()
    assert all("-l bob" in call and call.split(" -- ")[1].startswith("10.0.0.9 ")
               for call in (tmp_path / "ssh-calls").read_text().splitlines())


def test_a_builder_path_under_home_is_read_relative_to_the_login_directory(builder, tmp_path):
    (tmp_path / "home" / "out").mkdir()
    (tmp_path / "home" / "out" / "y.sif").write_bytes(b"yy")
    source = open_source("b1:~/out/y.sif", builder, SshOptions())
    assert (source.name, source.path, b"".join(source.chunks())) == ("y.sif", "out/y.sif", b"yy")


def test_a_missing_builder_file_and_a_directory_name_are_refused(builder, tmp_path):
    with pytest.raises(ShipError, match=r"b1:/nowhere/z.sif: .* failed with exit 1"):
        open_source("b1:/nowhere/z.sif", builder, SshOptions())
    with pytest.raises(ShipError, match=r"'\.\.' cannot be a file name at the destination"):
        open_source(f"b1:{tmp_path}/builds/..", builder, SshOptions())



def test_a_builder_that_does_not_answer_yet_is_a_passing_failure_ship_retries(builder, tmp_path):
    refused = "ssh: connect to host 10.0.0.9 port 22: Connection refused"
    (tmp_path / "bin" / "ssh").write_text(f"#!/bin/sh\necho '{refused}' >&2\nexit 255\n")
    with pytest.raises(TransientConnectError, match="b1:x.sif: ssh failed: .*Connection refused"):
        open_source("b1:x.sif", builder, SshOptions())

def test_a_path_with_a_colon_after_the_builder_name_is_still_the_builders(builder, tmp_path):
    (tmp_path / "builds" / "a:b.sif").write_bytes(b"ab")
    assert open_source(f"b1:{tmp_path}/builds/a:b.sif", builder, SshOptions()).name == "a:b.sif"


def test_local_sources_are_regular_files_named_by_their_last_component(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rel.sif").write_bytes(b"r")
    assert local_source("rel.sif").name == "rel.sif"
    with pytest.raises(ShipError, match="not a regular file"):
        local_source(str(tmp_path))
    (tmp_path / "new\nline").write_bytes(b"n")
    with pytest.raises(ShipError, match="cannot be a file name"):
        local_source(str(tmp_path / "new\nline"))


def test_a_source_ships_the_size_it_had_when_opened_and_names_a_shrunk_one(tmp_path):
    (tmp_path / "s.sif").write_bytes(b"0123456789")
    source = local_source(str(tmp_path / "s.sif"))
    with open(tmp_path / "s.sif", "ab") as grow:
        grow.write(b"more")
    assert b"".join(source.chunks(4)) == b"456789"
    (tmp_path / "s.sif").write_bytes(b"012")
    with pytest.raises(ShipError, match="ended after 3 of 10 bytes"):
        b"".join(source.chunks())


def test_probe_reader_keeps_equals_signs_in_values_and_defaults_the_hasher():
    probe = parse_probe(f"dir=/far/a=b\n{DF}\n", "h")
    assert (probe.directory, probe.hasher, probe.free_bytes) == ("/far/a=b", "sha256sum", 1024 * 1024)
    with pytest.raises(ShipError, match=r"^h: directory /x=y is not writable$"):
        parse_probe("error=directory /x=y is not writable\n", "h")
    assert receiver_outcome("mismatch=a=b\nok=c\n") == {"mismatch": "a=b", "ok": "c"}


def test_probe_reader_refuses_an_answer_without_free_space_or_directory():
    with pytest.raises(ShipError, match="printed no answer"):
        parse_probe("dir=/far\n", "h")
    with pytest.raises(ShipError, match="printed no answer"):
        parse_probe(f"{DF}\n", "h")
    with pytest.raises(ShipError, match=r"cannot read the free space from df: 'garbage'"):
        parse_probe("dir=/far\ndf=garbage\n", "h")


def test_a_sidecar_with_a_non_numeric_field_is_not_trusted():
    sha = "a" * 64
    assert parse_probe(f"dir=/f\n{DF}\nsidecar={sha} 1 2 3\n", "h").sidecar_sha256 == sha
    assert parse_probe(f"dir=/f\n{DF}\nsidecar={sha} x 2 3\n", "h").sidecar_sha256 is None


def test_hash_cache_creates_its_directory_and_keeps_the_newest_entries(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "CACHE_ENTRIES", 2)
    cache = HashCache(tmp_path / "a" / "b" / "hashes.json")
    cache.put("one", "1")
    cache.put("two", "2")
    cache.put("one", "1")  # used again: now the newest
    cache.put("three", "3")
    assert (cache.get("one"), cache.get("two"), cache.get("three")) == ("1", None, "3")


def test_local_sha256_hashes_a_file_once_then_answers_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "i.sif").write_bytes(b"img")
    assert local_sha256(str(tmp_path / "i.sif")) == hashlib.sha256(b"img").hexdigest()
    cache = HashCache(tmp_path / "cache" / "provision" / "ship-sha256.json")
    identity = local_source(str(tmp_path / "i.sif")).identity
    assert cache.get(identity) == hashlib.sha256(b"img").hexdigest()
    cache.put(identity, "as-cached")
    assert local_sha256(str(tmp_path / "i.sif")) == "as-cached"
