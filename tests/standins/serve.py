"""Serve the stand-in repositories from a thread (the lab binds its bridge address).

http, or https when the build was made for an https base URL (it then left a server
certificate in OUT_DIR/tls, which the server picks up connection by connection).
"""

from __future__ import annotations

import functools
import ssl
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .tls import SERVER_PEM


class _Handler(SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: apt fetches many small files

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base class's name)
        self.server.requests.append(f"{self.command} {self.path} {args[1] if len(args) > 1 else ''}".strip())


class _Server(ThreadingHTTPServer):
    def __init__(self, address, handler, certificate: Path):
        super().__init__(address, handler)
        self.certificate = certificate
        self.requests: list[str] = []

    def get_request(self):
        conn, address = super().get_request()
        if self.certificate.exists():
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.certificate)
            conn.settimeout(30)
            conn = context.wrap_socket(conn, server_side=True)  # a failed handshake drops this one
        return conn, address


class StandinServer:
    """A running server for ROOT; use as a context manager or call stop().

    ``requests`` lists "METHOD PATH STATUS" of every request served, for tests to look at.
    """

    def __init__(self, root: Path, bind: str, port: int):
        handler = functools.partial(_Handler, directory=str(root))
        self.httpd = _Server((bind, port), handler, root.parent / "tls" / SERVER_PEM)
        self.root = root
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="standin-repos",
                                       daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def url(self) -> str:
        """http://BIND:PORT, the base URL for an http build."""
        return f"http://{self.httpd.server_address[0]}:{self.port}"

    @property
    def https_url(self) -> str:
        """https://BIND:PORT, the base URL for an https build (see tls.py)."""
        return f"https://{self.httpd.server_address[0]}:{self.port}"

    @property
    def requests(self) -> list[str]:
        return self.httpd.requests

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)

    def __enter__(self) -> StandinServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def serve(out_dir: Path, bind: str = "10.200.0.1", port: int = 8089) -> StandinServer:
    """Serve OUT_DIR/www (what build_standin_repos makes in OUT_DIR) at http://BIND:PORT/.

    OUT_DIR/www need not exist yet: a server may be started first and the repos built for its
    URL (server.url) afterwards; a rebuild replaces the folder under a running server.

    BIND must be an address of this machine: the lab's bridge address once the lab is up,
    127.0.0.1 for tests that need no network namespace. PORT 0 picks a free port.
    """
    return StandinServer(Path(out_dir) / "www", bind, port)
