"""A lab certificate authority and a server certificate, for serving the stand-ins over https.

The vendors' URLs are https, and one documented step depends on it: NVIDIA's
``sed 's#deb https://#deb [signed-by=...] https://#g'`` over nvidia-container-toolkit.list
adds nothing to an http line. Built with an https base URL, the stand-in repos are served over
TLS with a certificate for the URL's host, signed by a lab CA that lab hosts trust
(copy ``lab-ca.crt`` to /usr/local/share/ca-certificates/ and run update-ca-certificates).
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
from pathlib import Path

CA_CERT = "lab-ca.crt"
SERVER_PEM = "server.pem"  # certificate then key, what the server loads


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def write_certificates(tls_dir: Path, host: str) -> Path:
    """Make (or keep) the lab CA in TLS_DIR and a fresh server certificate for HOST (an IP
    address or a name); return the CA certificate's path."""
    tls_dir.mkdir(parents=True, exist_ok=True)
    tls_dir.chmod(0o700)
    curve = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    if not (tls_dir / CA_CERT).exists():
        _openssl("req", "-x509", *curve, "-keyout", "lab-ca.key", "-out", CA_CERT, "-days", "3650",
                 "-subj", "/CN=Lab stand-in repositories CA",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=tls_dir)
    try:
        san = f"IP:{ipaddress.ip_address(host)}"
    except ValueError:
        san = f"DNS:{host}"
    (tls_dir / "server.ext").write_text(f"subjectAltName={san}\nextendedKeyUsage=serverAuth\n")
    _openssl("req", *curve, "-keyout", "server.key", "-out", "server.csr", "-subj", f"/CN={host}", cwd=tls_dir)
    _openssl("x509", "-req", "-in", "server.csr", "-CA", CA_CERT, "-CAkey", "lab-ca.key", "-CAcreateserial",
             "-days", "825", "-extfile", "server.ext", "-out", "server.crt", cwd=tls_dir)
    (tls_dir / SERVER_PEM).write_bytes((tls_dir / "server.crt").read_bytes() + (tls_dir / "server.key").read_bytes())
    return tls_dir / CA_CERT


def forget_server_certificate(tls_dir: Path) -> None:
    """An http build: the server must not speak TLS (the CA stays for a later https build)."""
    for name in (SERVER_PEM, "server.crt", "server.key", "server.csr", "server.ext"):
        (tls_dir / name).unlink(missing_ok=True)
    if tls_dir.exists() and not any(tls_dir.iterdir()):
        shutil.rmtree(tls_dir)
