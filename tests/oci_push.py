"""Push a small image to a registry with the Docker Registry HTTP API v2 (for lab tests: the cluster hosts have no docker)."""
from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import tarfile
import urllib.request

MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"


def layer(files: dict[str, tuple[bytes, int]], links: dict[str, str]) -> tuple[bytes, str]:
    """A gzip'd tar layer of files {path: (content, mode)} and symlinks {path: target}, and its diff id."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        directories = sorted({"/".join(p.split("/")[:i]) for p in [*files, *links] for i in range(1, p.count("/") + 1)})
        for directory in directories:
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for path, (content, mode) in files.items():
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(content), mode
            tar.addfile(info, io.BytesIO(content))
        for path, target in links.items():
            info = tarfile.TarInfo(path)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return gzip.compress(raw.getvalue(), mtime=0), hashlib.sha256(raw.getvalue()).hexdigest()


def push_image(registry: str, user: str, password: str, repository: str, tag: str,
               files: dict[str, tuple[bytes, int]], links: dict[str, str], cmd: list[str],
               path: str = "/bin") -> str:
    """Upload one layer, the config and the manifest over plain http; return the manifest's digest."""
    auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def call(method: str, url: str, data: bytes | None = None, headers: dict | None = None):
        request = urllib.request.Request(url if url.startswith("http") else f"http://{registry}{url}", data=data,
                                         method=method, headers={"Authorization": auth, **(headers or {})})
        return urllib.request.urlopen(request, timeout=30)

    def blob(content: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(content).hexdigest()
        location = call("POST", f"/v2/{repository}/blobs/uploads/").headers["Location"]
        joiner = "&" if "?" in location else "?"
        call("PUT", f"{location}{joiner}digest={digest}", content, {"Content-Type": "application/octet-stream"})
        return digest

    compressed, diff_id = layer(files, links)
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": cmd, "Env": [f"PATH={path}"]},
                         "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id}"]}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": len(config),
                   "digest": blob(config)},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": len(compressed),
                    "digest": blob(compressed)}]}).encode()
    call("PUT", f"/v2/{repository}/manifests/{tag}", manifest, {"Content-Type": MANIFEST_TYPE})
    return "sha256:" + hashlib.sha256(manifest).hexdigest()
