"""The ship benchmark: a 2 GiB file over a lab link with ship, rsync -e ssh and scp, verification included.

Run by hand as root: `python bench/ship.py [--size-mib 2048] [--json results.json]`.
Brings up the lab host `shipbench` (left up; the lab is shared, it never calls Lab.down()), makes
the file in /var/tmp (deleted at the end), and times: ship (sha256 checked at both ends by
design), rsync and scp each followed by a remote sha256sum compared with the local one, an
unchanged re-ship, and a resume after the link was cut at about half way.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml
from rich.console import Console

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from provision.lab.lab import Lab  # noqa: E402
from provision.ship import LinkLostError, ship  # noqa: E402

HOST = "shipbench"
REMOTE_DIR = "/root/bench"


def make_file(path: Path, size: int) -> str:
    """Random bytes (incompressible), written once; returns their sha256."""
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        left = size
        while left:
            block = os.urandom(min(16 << 20, left))
            digest.update(block)
            out.write(block)
            left -= len(block)
    return digest.hexdigest()


def timed(argv: list[str]) -> float:
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{argv[0]} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=2048)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    size = args.size_mib << 20
    for tool in ("rsync", "scp", "tc"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing on this machine (apt-get install {tool})")
    lab = Lab()
    (host,) = lab.up([HOST])
    work = Path(tempfile.mkdtemp(prefix="shipbench-", dir="/var/tmp"))
    install_rsync(lab, work)
    source = work / "image.sif"
    ssh = ["ssh", "-i", str(lab.client_key), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
           "-o", f"UserKnownHostsFile={lab.known_hosts_path}"]
    target = f"root@{host.address}"
    rows: list[tuple[str, float, float]] = []

    def clear() -> None:
        lab.exec(HOST, f"rm -rf {REMOTE_DIR} && mkdir -p {REMOTE_DIR} && sync")

    def remote_sha() -> float:
        started = time.monotonic()
        got = subprocess.run(ssh + [target, f"sha256sum {REMOTE_DIR}/image.sif"], capture_output=True, text=True)
        if got.stdout.split()[:1] != [sha]:
            raise SystemExit(f"remote sha256 {got.stdout!r} differs from {sha}")
        return time.monotonic() - started

    try:
        (work / "hosts").mkdir()
        shutil.copy(lab.known_hosts_path, work / "hosts" / "known_hosts")
        inventory = {"all": {"hosts": {HOST: {"ansible_host": host.address, "ansible_user": "root",
                                              "ssh_key": str(lab.client_key), "sif_dir": REMOTE_DIR}}}}
        (work / "hosts" / "inventory.yml").write_text(yaml.safe_dump(inventory))
        print(f"making {args.size_mib} MiB of random data in {work} ...", flush=True)
        sha = make_file(source, size)
        quiet = Console(quiet=True)

        def run_ship():
            return ship(str(source), HOST, work / "hosts", console=quiet, hash_cache=work / "hashes.json")

        for label, argv in (("rsync -e ssh", ["rsync", "-e", " ".join(ssh), str(source), f"{target}:{REMOTE_DIR}/"]),
                            ("scp", ["scp", "-q", *ssh[1:], str(source), f"{target}:{REMOTE_DIR}/"]),
                            ("scp -c aes128-gcm", ["scp", "-q", "-c", "aes128-gcm@openssh.com", *ssh[1:], str(source),
                                                   f"{target}:{REMOTE_DIR}/"])):
            clear()
            moved = timed(argv)
            rows.append((label, moved, size))
            rows.append((f"{label} + remote sha256sum", moved + remote_sha(), size))
        clear()
        (work / "hashes.json").unlink(missing_ok=True)
        result = run_ship()
        assert result.sha256 == sha and result.bytes_sent == size
        rows.append(("ship (sha256 at both ends)", result.seconds, size))
        again = run_ship()
        assert again.skipped and again.bytes_sent == 0
        rows.append(("ship, unchanged re-ship", again.seconds, 0))
        clear()
        rows.append(resume_after_cut(lab, host, run_ship, size, sha))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        lab.exec(HOST, f"rm -rf {REMOTE_DIR}", check=False)
    print_table(rows)
    full = next(seconds for what, seconds, _ in rows if what.startswith("ship (sha256"))
    resumed = rows[-1]
    print(f"\nresume / full ship: {resumed[1] / full:.2f} with {resumed[2] / size:.0%} missing "
          f"(target: at most 0.6 with about half missing)")
    if args.json:
        args.json.write_text(json.dumps([{"what": w, "seconds": s, "bytes": b} for w, s, b in rows], indent=1))


def install_rsync(lab: Lab, work: Path) -> None:
    """rsync in the host, from .debs this machine's apt fetches (lab hosts may have no route to a mirror)."""
    if lab.exec(HOST, "command -v rsync", check=False).returncode == 0:
        return
    subprocess.run(["apt-get", "download", "-q", "rsync", "libpopt0", "libxxhash0"], cwd=work, check=True,
                   capture_output=True)
    for deb in work.glob("*.deb"):
        shutil.move(str(deb), lab.rootfs(HOST) / "tmp" / deb.name)
    lab.exec(HOST, "dpkg -i /tmp/*.deb >/dev/null && rm -f /tmp/*.deb")


def resume_after_cut(lab: Lab, host, run_ship, size: int, sha: str) -> tuple[str, float, float]:
    """Cut the link when half the file is there, then time the ship that sends the rest."""
    failed: dict = {}

    def first():
        try:
            run_ship()
        except LinkLostError as exc:
            failed["error"] = exc

    thread = threading.Thread(target=first)
    thread.start()
    far = lab.rootfs(HOST) / REMOTE_DIR.lstrip("/")
    while thread.is_alive():
        parts = list(far.glob(".image.sif.*.ship-part"))
        if parts and parts[0].exists() and parts[0].stat().st_size >= size // 2:
            break
        time.sleep(0.02)
    lab.cut_link(HOST)
    thread.join()
    lab.restore_link(HOST)
    lab.wait_for_ssh(HOST)  # time the resume, not the link coming back (ship would retry through that too)
    if "error" not in failed:
        raise SystemExit("the cut did not interrupt the ship (it finished first)")
    rest = run_ship()
    assert rest.sha256 == sha and rest.bytes_sent == size - rest.resumed_from
    share = rest.bytes_sent / size
    return (f"ship, resume after a cut ({share:.0%} missing)", rest.seconds, rest.bytes_sent)


def print_table(rows: list[tuple[str, float, float]]) -> None:
    print(f"\n| {'what':<42} | {'seconds':>8} | {'MB/s':>7} |")
    print(f"|{'-' * 44}|{'-' * 10}:|{'-' * 9}:|")
    for what, seconds, moved in rows:
        rate = f"{moved / seconds / 1e6:.0f}" if moved else "-"
        print(f"| {what:<42} | {seconds:>8.2f} | {rate:>7} |")


if __name__ == "__main__":
    main()
