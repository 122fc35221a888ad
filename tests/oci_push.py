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
LIST_TYPE = "application/vnd.docker.distribution.manifest.list.v2+json"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"


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


def _caller(registry: str, user: str, password: str):
    auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def call(method: str, url: str, data: bytes | None = None, headers: dict | None = None):
        request = urllib.request.Request(url if url.startswith("http") else f"http://{registry}{url}", data=data,
                                         method=method, headers={"Authorization": auth, **(headers or {})})
        return urllib.request.urlopen(request, timeout=30)
    return call


def push_index(registry: str, user: str, password: str, repository: str, tag: str,
               manifests: dict[str, str]) -> None:
    """A manifest list TAG naming the manifests {arch: digest} already pushed to `repository`."""
    call = _caller(registry, user, password)
    entries = []
    for arch, digest in manifests.items():
        head = call("HEAD", f"/v2/{repository}/manifests/{digest}", headers={"Accept": MANIFEST_TYPE})
        entries.append({"mediaType": MANIFEST_TYPE, "digest": digest, "size": int(head.headers["Content-Length"]),
                        "platform": {"architecture": arch, "os": "linux"}})
    index = json.dumps({"schemaVersion": 2, "mediaType": LIST_TYPE, "manifests": entries}).encode()
    call("PUT", f"/v2/{repository}/manifests/{tag}", index, {"Content-Type": LIST_TYPE})


def get_manifest(registry: str, user: str, password: str, repository: str, tag: str) -> dict:
    """The manifest (or manifest list / OCI index) TAG, as the registry serves it to a client accepting lists."""
    call = _caller(registry, user, password)
    accept = ", ".join((LIST_TYPE, INDEX_TYPE, MANIFEST_TYPE, "application/vnd.oci.image.manifest.v1+json"))
    return json.loads(call("GET", f"/v2/{repository}/manifests/{tag}", headers={"Accept": accept}).read())


def push_image(registry: str, user: str, password: str, repository: str, tag: str,
               files: dict[str, tuple[bytes, int]], links: dict[str, str], cmd: list[str],
               path: str = "/bin", arch: str = "amd64") -> str:
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
    config = json.dumps({"architecture": arch, "os": "linux", "config": {"Cmd": cmd, "Env": [f"PATH={path}"]},
                         "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id}"]}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": len(config),
                   "digest": blob(config)},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": len(compressed),
                    "digest": blob(compressed)}]}).encode()
    call("PUT", f"/v2/{repository}/manifests/{tag}", manifest, {"Content-Type": MANIFEST_TYPE})
    return "sha256:" + hashlib.sha256(manifest).hexdigest()
