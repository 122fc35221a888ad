"""Ansible host patterns: `name:port` and `[a:b(:step)]` ranges, expanded exactly as Ansible does."""
from __future__ import annotations

import re
import string

from provision.errors import InventoryError

# Follows lib/ansible/parsing/utils/addresses.py (parse_address's port patterns) and
# lib/ansible/plugins/inventory/__init__.py (detect_range, expand_hostname_range) of ansible-core.
_BRACKETED_HOSTPORT = re.compile(r"^\[(.+)\]:([0-9]+)$")
_HOSTPORT = re.compile(r"^((?:[^:\[\]]|\[[^\]]*\])*):([0-9]+)$")
_RANGE = r"\[(?:[a-z]:[a-z]|[0-9]+:[0-9]+)(?::[0-9]+)?\]"
_LABEL = rf"(?:[\w]|{_RANGE})(?:[\w_-]|{_RANGE})*(?<![_-])"
_HOSTNAME = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$", re.I | re.UNICODE)
_IPV4_PART = r"(?:[01]?[0-9]{1,2}|2[0-4][0-9]|25[0-5]|\[(?:[0-9]+:[0-9]+)(?::[0-9]+)?\])"
_IPV4 = re.compile(rf"^(?:{_IPV4_PART}\.){{3}}{_IPV4_PART}$")
_IPV6 = re.compile(r"^(?=.*:.*:)[0-9a-f:.\[\]]+$", re.I)  # looser than Ansible's: any hex-and-colon address
MAX_HOSTS = 100_000


def split_port(pattern: str) -> tuple[str, int | None]:
    """`host:port` or `[host]:port` split as Ansible's parse_address does; what it cannot parse keeps no port."""
    address, port = pattern, None
    for matcher in (_BRACKETED_HOSTPORT, _HOSTPORT):
        found = matcher.match(address)
        if found:
            address, port = found.group(1), int(found.group(2))
    if _IPV4.match(address) or _IPV6.match(address) or _HOSTNAME.match(address):
        return address, port
    return pattern, None


def expand_host_pattern(pattern: str, where: str) -> tuple[list[str], int | None]:
    """The host names a pattern stands for and its port (None when it gives none)."""
    name, port = split_port(pattern)
    if "[" not in name:
        return [name], port
    try:
        names = expand_range(name)
    except ValueError as exc:
        raise InventoryError(f"{where}: host range {pattern!r}: {exc}") from None
    return names, port


def expand_range(line: str) -> list[str]:
    """Every name `line` stands for: `db[01:10:3]-[a:c]` expands the first range, then the rest."""
    head, _, rest = line.partition("[")
    bounds_text, closed, tail = rest.partition("]")
    if not closed:
        raise ValueError("a '[' without its ']'")
    bounds = bounds_text.split(":")
    if len(bounds) not in (2, 3):
        raise ValueError("a range is [begin:end] or [begin:end:step]")
    begin, end = bounds[0] or "0", bounds[1]
    step = bounds[2] if len(bounds) == 3 else "1"
    if not end:
        raise ValueError("a range needs an end value")
    width = len(begin) if begin[0] == "0" and len(begin) > 1 else 0
    if width and width != len(end):
        raise ValueError("a zero-padded range needs begin and end of the same length")
    try:
        step_size = int(step)
        if step_size < 1:
            raise ValueError("a range step must be 1 or more")
        if begin in string.ascii_letters and end in string.ascii_letters:
            first, last = string.ascii_letters.index(begin), string.ascii_letters.index(end)
            if first > last:
                raise ValueError("a range needs begin <= end")
            sequence = list(string.ascii_letters[first:last + 1:step_size])
        else:
            sequence = [str(n).zfill(width) if width else str(n) for n in range(int(begin), int(end) + 1, step_size)]
    except ValueError as exc:
        raise ValueError(str(exc) if "range" in str(exc) else f"not a range: [{bounds_text}]") from None
    if len(sequence) > MAX_HOSTS:
        raise ValueError(f"stands for {len(sequence):,} hosts (at most {MAX_HOSTS:,})")
    names: list[str] = []
    for item in sequence:
        name = f"{head}{item}{tail}"
        names.extend(expand_range(name) if "[" in name else [name])
    return names
