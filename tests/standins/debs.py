"""Build the stand-in .deb files: rendered payloads, and Debian's docker.io split into Docker CE.

Every package is built with ``dpkg-deb --root-owner-group --build`` and carries
``/usr/share/doc/<name>/LAB-STANDIN`` saying which vendor component it stands in for.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from pathlib import Path

from .recipes import MAINTAINER, DebRecipe, Payload

PAYLOAD_DIR = Path(__file__).parent / "payload"
_INCLUDE = re.compile(r"^#@include (\S+)$", re.MULTILINE)
_PLACEHOLDER = re.compile(r"@[A-Z][A-Z_]*@")


def render_payload(source: str, subs: dict[str, str]) -> str:
    """The text of payload/SOURCE with its includes pasted and every @KEY@ replaced.

    Raises ValueError naming the file when a placeholder has no value.
    """
    text = (PAYLOAD_DIR / source).read_text()
    text = _INCLUDE.sub(lambda m: render_payload(m.group(1), {}).rstrip("\n"), text)
    for key, value in subs.items():
        text = text.replace(f"@{key}@", value)
    if subs and (left := _PLACEHOLDER.search(text)):
        raise ValueError(f"payload/{source}: no value for {left.group(0)}")
    return text


def _substitutions(recipe: DebRecipe, extra: tuple[tuple[str, str], ...] = ()) -> dict[str, str]:
    return {"PACKAGE": recipe.name, "VERSION": recipe.version,
            "UPSTREAM_VERSION": recipe.upstream_version, **dict(recipe.subs), **dict(extra)}


def _maintainer_script(recipe: DebRecipe, script: str, snippets: tuple[str, ...]) -> str:
    subs = _substitutions(recipe)
    parts = [
        "#!/bin/sh",
        f"# LAB STAND-IN {script} of {recipe.name} (stands in for {recipe.stands_in_for}).",
        "set -e",
        render_payload("record.sh", subs),
        f'standin_record {script} "$@"',
        *(render_payload(snippet, subs) for snippet in snippets),
    ]
    return "\n".join(parts) + "\n"


def _write_md5sums(root: Path) -> None:
    lines = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink() and "DEBIAN" not in path.relative_to(root).parts:
            digest = hashlib.md5(path.read_bytes()).hexdigest()
            lines.append(f"{digest}  {path.relative_to(root)}\n")
    (root / "DEBIAN" / "md5sums").write_text("".join(lines))


def _write_conffiles(root: Path) -> None:
    etc = root / "etc"
    conffiles = sorted(f"/{p.relative_to(root)}" for p in etc.rglob("*") if p.is_file()) if etc.exists() else []
    if conffiles:
        (root / "DEBIAN" / "conffiles").write_text("".join(f"{c}\n" for c in conffiles))


def _dpkg_build(root: Path, out: Path, compression: tuple[str, ...] = ()) -> Path:
    subprocess.run(["dpkg-deb", "--root-owner-group", *compression, "--build", str(root), str(out)],
                   check=True, stdout=subprocess.DEVNULL)
    return out


def build_deb(recipe: DebRecipe, work: Path, out_dir: Path) -> Path:
    """Build RECIPE into OUT_DIR/<name>_<version>_<arch>.deb, staging it under WORK."""
    root = work / recipe.filename.removesuffix(".deb")
    shutil.rmtree(root, ignore_errors=True)
    (root / "DEBIAN").mkdir(parents=True)
    for target, content in recipe.files:
        path = root / target.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Payload):
            path.write_text(render_payload(content.source, _substitutions(recipe, content.subs)))
            path.chmod(content.mode)
        else:
            path.write_bytes(content)
            path.chmod(0o644)
    doc = root / "usr/share/doc" / recipe.name
    doc.mkdir(parents=True, exist_ok=True)
    (doc / "LAB-STANDIN").write_text(
        f"LAB STAND-IN for {recipe.stands_in_for}, built by the provision project's lab.\n")
    control = [
        f"Package: {recipe.name}",
        f"Version: {recipe.version}",
        f"Architecture: {recipe.arch}",
        f"Maintainer: {MAINTAINER}",
        "Section: misc",
        "Priority: optional",
    ]
    if recipe.depends:
        control.append(f"Depends: {', '.join(recipe.depends)}")
    if recipe.conflicts:
        control.append(f"Conflicts: {', '.join(recipe.conflicts)}")
    if recipe.provides:
        control.append(f"Provides: {', '.join(recipe.provides)}")
    if recipe.replaces:
        control.append(f"Replaces: {', '.join(recipe.replaces)}")
    control.append(f"Description: LAB STAND-IN for {recipe.stands_in_for}")
    (root / "DEBIAN" / "control").write_text("\n".join(control) + "\n")
    scripts = {"postinst": recipe.postinst, "postrm": recipe.postrm}
    for script, snippets in scripts.items():
        if script == "postinst" or snippets:
            path = root / "DEBIAN" / script
            path.write_text(_maintainer_script(recipe, script, snippets))
            path.chmod(0o755)
    _write_conffiles(root)
    _write_md5sums(root)
    deb = _dpkg_build(root, out_dir / recipe.filename)
    shutil.rmtree(root)
    return deb


# ---------------------------------------------------------------- Docker CE from Debian's docker.io

# Paths of docker.io that belong to Docker CE's CLI package rather than to the engine.
_CLI_PATHS = (
    "usr/bin/docker",
    "usr/share/bash-completion/completions/docker",
    "usr/share/fish/vendor_completions.d/docker.fish",
    "usr/share/zsh/vendor-completions/_docker",
    "usr/share/man/man1",
)


def _control_fields(text: str) -> dict[str, str]:
    """A deb822 stanza as an ordered dict (continuation lines kept in the value)."""
    fields: dict[str, str] = {}
    key = ""
    for line in text.splitlines():
        if line[:1] in (" ", "\t") and key:
            fields[key] += "\n" + line
        elif ":" in line:
            key, value = line.split(":", 1)
            fields[key] = value.strip()
    return fields


def _format_control(fields: dict[str, str]) -> str:
    return "".join(f"{k}: {v}\n" for k, v in fields.items())


def _native_arch() -> str:
    return subprocess.run(["dpkg", "--print-architecture"], check=True, capture_output=True, text=True).stdout.strip()


def _foreign_apt_options(downloads: Path, arch: str) -> list[str]:
    """apt options that read ARCH's package lists from a folder of DOWNLOADS, not this machine's state."""
    lists = downloads / f"apt-lists-{arch}"
    (lists / "partial").mkdir(parents=True, exist_ok=True)
    return ["-o", f"APT::Architecture={arch}", "-o", f"APT::Architectures::={arch}",
            "-o", f"Dir::State::Lists={lists}", "-o", "Dir::Cache::pkgcache=", "-o", "Dir::Cache::srcpkgcache="]


def download_debian_deb(downloads: Path, package: str, arch: str = "") -> Path:
    """Debian's PACKAGE .deb for ARCH (this machine's when empty), fetched once with `apt-get download`
    from this machine's sources and kept in DOWNLOADS; another architecture's lists live in DOWNLOADS."""
    downloads.mkdir(parents=True, exist_ok=True)
    native = _native_arch()
    arch = arch or native
    found = sorted(downloads.glob(f"{package}_*_{arch}.deb"))
    if found:
        return found[-1]
    options = [] if arch == native else _foreign_apt_options(downloads, arch)
    if options:
        subprocess.run(["apt-get", "-q", *options, "update"], capture_output=True, text=True)
    result = subprocess.run(["apt-get", *options, "download", f"{package}:{arch}"], cwd=downloads,
                            capture_output=True, text=True)
    found = sorted(downloads.glob(f"{package}_*_{arch}.deb"))
    if result.returncode != 0 or not found:
        raise RuntimeError(f"apt-get download {package}:{arch} failed (rc={result.returncode}): "
                           f"{result.stderr.strip().splitlines()[-1:]}")
    return found[-1]


def download_docker_io(downloads: Path, arch: str = "") -> Path:
    return download_debian_deb(downloads, "docker.io", arch)


def repackage_containerd_io(parts: list[Path], version: str, work: Path, out_dir: Path) -> Path:
    """containerd.io from Debian's containerd and runc: one package carrying both, as Docker's does.

    Control fields as docker/containerd-packaging debian/control: Provides, Conflicts and Replaces
    containerd and runc (so installing it removes Debian's), Depends on the libraries only.
    """
    root = work / "containerd.io"
    shutil.rmtree(root, ignore_errors=True)
    for deb in parts:
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    arch = _control_fields(subprocess.run(["dpkg-deb", "-f", str(parts[0])], check=True,
                                          capture_output=True, text=True).stdout)["Architecture"]
    doc = root / "usr/share/doc/containerd.io"
    doc.mkdir(parents=True, exist_ok=True)
    (doc / "LAB-STANDIN").write_text("LAB STAND-IN for Docker's containerd.io: files of Debian's "
                                     + ", ".join(d.name for d in parts) + ".\n")
    (root / "DEBIAN").mkdir(parents=True, exist_ok=True)
    fields = {"Package": "containerd.io", "Version": version, "Architecture": arch,
              "Maintainer": MAINTAINER, "Section": "devel", "Priority": "optional",
              "Depends": "libc6, libseccomp2",
              "Provides": "containerd, runc", "Conflicts": "containerd, runc", "Replaces": "containerd, runc",
              "Description": "LAB STAND-IN for Docker's containerd.io (Debian's containerd and runc)"}
    (root / "DEBIAN/control").write_text(_format_control(fields))
    _write_conffiles(root)
    _write_md5sums(root)
    deb = _dpkg_build(root, out_dir / f"containerd.io_{version}_{arch}.deb", ("-Zzstd", "-z1"))
    shutil.rmtree(root)
    return deb


def repackage_docker_engine(docker_io: Path, version: str, work: Path, out_dir: Path) -> list[Path]:
    """Split Debian's docker.io into docker-ce (engine) and docker-ce-cli (the docker command).

    Debian's docker.io declares Conflicts: docker-ce, so a docker-ce that depends on it cannot
    be installed: the stand-in is docker.io itself under Docker CE's names, its maintainer
    scripts and conffiles kept, its dependencies kept plus Docker CE's own.
    """
    engine = work / f"docker-ce-{version}"
    cli = work / f"docker-ce-cli-{version}"
    for path in (engine, cli):
        shutil.rmtree(path, ignore_errors=True)
    subprocess.run(["dpkg-deb", "-R", str(docker_io), str(engine)], check=True)
    for rel in _CLI_PATHS:
        source = engine / rel
        if source.exists():
            (cli / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.move(source, cli / rel)
    original = _control_fields((engine / "DEBIAN/control").read_text())
    arch = original["Architecture"]
    debian_version = original["Version"]
    for name, root in (("docker-ce", engine), ("docker-ce-cli", cli)):
        doc = root / "usr/share/doc" / name
        doc.mkdir(parents=True, exist_ok=True)
        (doc / "LAB-STANDIN").write_text(
            f"LAB STAND-IN for Docker CE's {name}: files of Debian's docker.io {debian_version}.\n")
    (cli / "DEBIAN").mkdir(parents=True, exist_ok=True)
    common = {"Version": version, "Architecture": arch, "Maintainer": MAINTAINER,
              "Section": "admin", "Priority": "optional"}
    engine_fields = {
        "Package": "docker-ce", **common,
        "Pre-Depends": original.get("Pre-Depends", ""),
        # docker-ce-packaging deb/common/control: Depends containerd.io, docker-ce-cli, iptables;
        # docker.io's own containerd and runc are what containerd.io provides.
        "Depends": ", ".join([d.strip() for d in original["Depends"].split(",")
                              if d.strip().split()[0] not in ("containerd", "runc")]
                             + ["containerd.io (>= 1.7.27)", "docker-ce-cli"]),
        "Recommends": original.get("Recommends", ""),
        "Conflicts": "docker.io, docker-engine",
        "Description": f"LAB STAND-IN for Docker CE's engine (Debian's docker.io {debian_version})",
    }
    cli_fields = {
        "Package": "docker-ce-cli", **common,
        "Depends": "libc6",
        "Conflicts": "docker.io, docker-engine",
        "Description": f"LAB STAND-IN for Docker CE's CLI (Debian's docker.io {debian_version})",
    }
    debs = []
    for name, root, fields in (("docker-ce", engine, engine_fields), ("docker-ce-cli", cli, cli_fields)):
        fields = {k: v for k, v in fields.items() if v}
        (root / "DEBIAN/control").write_text(_format_control(fields))
        _write_md5sums(root)
        filename = f"{name}_{version.split(':', 1)[-1]}_{arch}.deb"
        debs.append(_dpkg_build(root, out_dir / filename, ("-Zzstd", "-z1")))
        shutil.rmtree(root)
    return debs
