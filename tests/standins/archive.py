"""apt archive plumbing for the stand-ins: throwaway signing keys, Packages indexes, signed Release.

Keys are ed25519, made as the lab notes say (gpg --quick-gen-key ... ed25519 sign never), one
per repository, kept across rebuilds; signing runs in a short-lived GNUPGHOME.
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

@dataclass(frozen=True)
class SigningKey:
    fingerprint: str
    armored: bytes
    binary: bytes


class Signer:
    """Throwaway ed25519 keys, one per repository, kept in KEYS_DIR across rebuilds."""

    def __init__(self, keys_dir: Path):
        self.keys_dir = keys_dir
        keys_dir.mkdir(parents=True, exist_ok=True)
        keys_dir.chmod(0o700)
        self.home = Path(tempfile.mkdtemp(prefix="standin-gpg-"))  # short: gpg-agent's socket

    def _gpg(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(["gpg", "--batch", "--quiet", *args], check=True, capture_output=True,
                              env={"GNUPGHOME": str(self.home), "PATH": "/usr/bin:/bin"}, **kw)

    def key(self, name: str, label: str) -> SigningKey:
        email = f"{name}@lab.invalid"
        secret = self.keys_dir / f"{name}.sec.asc"
        if secret.exists():
            self._gpg("--import", str(secret))
        else:
            self._gpg("--passphrase", "", "--quick-gen-key", f"Lab {label} Repo <{email}>",
                      "ed25519", "sign", "never")
            secret.write_bytes(self._gpg("--armor", "--export-secret-keys", f"<{email}>").stdout)
            secret.chmod(0o600)
        listing = self._gpg("--with-colons", "--list-keys", f"<{email}>").stdout.decode()
        fingerprint = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
        return SigningKey(fingerprint, self._gpg("--armor", "--export", fingerprint).stdout,
                          self._gpg("--export", fingerprint).stdout)

    def sign_release(self, directory: Path, key: SigningKey, fields: dict[str, str]) -> None:
        """Write DIRECTORY/Release for the index files below it, then InRelease and Release.gpg."""
        options = [f"-oAPT::FTPArchive::Release::{k}={v}" for k, v in fields.items()]
        release = subprocess.run(["apt-ftparchive", *options, "release", "."], cwd=directory,
                                 check=True, capture_output=True).stdout
        (directory / "Release").write_bytes(release)
        for args in (("--clearsign", "-o", "InRelease"), ("-abs", "-o", "Release.gpg")):
            self._gpg("--yes", "--local-user", key.fingerprint, *args, "Release", cwd=directory)

    def close(self) -> None:
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], env={"GNUPGHOME": str(self.home)},
                       capture_output=True)
        shutil.rmtree(self.home, ignore_errors=True)


def write_packages_index(root: Path, pool: str | list[str], out: Path, only: list[str] | None = None) -> None:
    """OUT/Packages and Packages.gz for the .debs in ROOT/POOL (one folder or several), Filename
    relative to ROOT; with ONLY, just the .debs of those file names."""
    out.mkdir(parents=True, exist_ok=True)
    stanzas = []
    for folder in [pool] if isinstance(pool, str) else pool:
        index = subprocess.run(["apt-ftparchive", "packages", folder], cwd=root, check=True,
                               capture_output=True).stdout.decode()
        for stanza in index.strip().split("\n\n"):
            filename = next((line.split(": ", 1)[1] for line in stanza.splitlines()
                             if line.startswith("Filename: ")), "")
            if stanza.strip() and (only is None or filename.rsplit("/", 1)[-1] in only):
                stanzas.append(stanza.strip() + "\n")
    index = "\n".join(stanzas).encode()
    (out / "Packages").write_bytes(index)
    (out / "Packages.gz").write_bytes(gzip.compress(index, mtime=0))


def place_debs(debs: list[Path], directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for deb in debs:
        shutil.copy2(deb, directory / deb.name)
