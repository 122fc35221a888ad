"""What this machine's apt uses to reach Debian: its sources and the options the lab carries over."""

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from provision.lab.commands import LabError

APT_ETC = Path("/etc/apt")

# Options of this machine's apt that hosts need to use the same mirror (a snapshot
# mirror has expired Release files); set in a host only when set here.
CARRIED_APT_OPTIONS = ("Acquire::Check-Valid-Until", "Acquire::Check-Date")


@dataclass(frozen=True)
class AptSource:
    """One `deb` line of an apt sources file."""

    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]


def _deb822_sources(text: str) -> list[AptSource]:
    sources = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled") == "no":
            continue
        for uri in fields.get("uris", "").split():
            sources.append(AptSource(uri.rstrip("/"), tuple(fields.get("suites", "").split()),
                                     tuple(fields.get("components", "").split())))
    return sources


def _one_line_sources(text: str) -> list[AptSource]:
    sources = []
    for line in text.splitlines():
        line = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
        if len(line) >= 3 and line[0] == "deb":
            sources.append(AptSource(line[1].rstrip("/"), (line[2],), tuple(line[3:])))
    return sources


def apt_sources(apt_etc: Path = APT_ETC) -> list[AptSource]:
    """The enabled `deb` sources of this machine, from sources.list and sources.list.d."""
    sources = []
    if (apt_etc / "sources.list").is_file():
        sources += _one_line_sources((apt_etc / "sources.list").read_text())
    for path in sorted((apt_etc / "sources.list.d").glob("*.list")):
        sources += _one_line_sources(path.read_text())
    for path in sorted((apt_etc / "sources.list.d").glob("*.sources")):
        sources += _deb822_sources(path.read_text())
    return sources


def debian_mirror(suite: str, apt_etc: Path = APT_ETC) -> str:
    """The URI of the Debian archive this machine's apt uses for `suite`."""
    for source in apt_sources(apt_etc):
        if suite in source.suites and source.uri.startswith(("http://", "https://")):
            return source.uri
    raise LabError(f"no http(s) source for Debian {suite!r} in {apt_etc}/sources.list(.d)")


def apt_option(name: str) -> str:
    """The value this machine's apt configuration gives `name`, or "" when it sets none."""
    dump = subprocess.run(["apt-config", "dump", name], capture_output=True, text=True)
    for line in dump.stdout.splitlines():
        key, _, value = line.partition(" ")
        if key == name:
            return value.rstrip(";").strip('"')
    return ""


def carried_apt_options() -> dict[str, str]:
    """The options of CARRIED_APT_OPTIONS this machine's apt sets, with their values."""
    options = {name: apt_option(name) for name in CARRIED_APT_OPTIONS}
    return {name: value for name, value in options.items() if value}
