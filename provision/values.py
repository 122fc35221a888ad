"""Values validated by kind (package, path, URL, host, user, port, ...) before they land in a file, a name or argv."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from provision.secrets import MARKER, Secret


class LocatedStr(str):
    """A string read from a YAML file that remembers its file and line (kept through merges)."""

    where: str = ""

    def __new__(cls, value: str, where: str = "") -> "LocatedStr":
        text = super().__new__(cls, value)
        text.where = where
        return text


@dataclass(frozen=True)
class Kind:
    """What a value of this kind may contain, as a pattern and in words (for the error)."""

    name: str
    source: str | None  # the pattern as text: re compiles (and caches) it on first use; a run checks a few kinds
    says: str


def _kind(name: str, pattern: str | None, says: str) -> Kind:
    return Kind(name, pattern or None, says)


_DNS = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}))*\.?"
_IPV6 = r"\[?[0-9A-Fa-f:.]+(?:%[A-Za-z0-9_.-]+)?\]?"
_HOST = rf"(?:{_DNS}|{_IPV6})"
_USER = r"[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?"

KINDS: dict[str, Kind] = {k.name: k for k in [
    _kind("package", r"[A-Za-z0-9][A-Za-z0-9+.-]*(?:=[A-Za-z0-9.+~:-]+)?",
          "a Debian package name (letters, digits, + . -, not starting with -), optionally =VERSION"),
    _kind("package_prefix", r"[a-z0-9][a-z0-9+.-]*", "a Debian package name or prefix (a-z, 0-9, + . -)"),
    _kind("version", r"[A-Za-z0-9][A-Za-z0-9.+~:-]*", "a version (letters, digits, . + ~ : -)"),
    _kind("path", r"(?:/|~/)[A-Za-z0-9._+@%,=:/-]*",
          "an absolute path (/ or ~/ then letters, digits and . _ + @ % , = : / -; no spaces or quotes)"),
    _kind("abspath", r"/[A-Za-z0-9._+@%,=:/-]*",
          "an absolute path (/ then letters, digits and . _ + @ % , = : / -; no spaces or quotes)"),
    _kind("quoted_path", r"/[^\x00-\x1f\x7f]*",
          "an absolute path on one line (it is quoted wherever it is used)"),
    _kind("url", r"(?:https?|file)://[A-Za-z0-9._~:/?#\[\]@!$&()*+,;=%-]+",
          "an http(s):// or file:// URL without spaces, quotes, backslashes or backticks"),
    _kind("host", _HOST, "a host name or IP address (letters, digits, . - :; a user goes in ansible_user, a port in ansible_port)"),
    _kind("inventory_name", r"[A-Za-z0-9_][A-Za-z0-9_.:-]*",
          "an inventory name (letters, digits, _ . : -, not starting with - or .)"),
    _kind("address", rf"(?:{_USER}@)?{_HOST}(?::[0-9]{{1,5}})?", "[USER@]HOST[:PORT]"),
    _kind("registry", rf"{_DNS}(?::[0-9]{{1,5}})?(?:/[a-z0-9._-]+)*",
          "a registry host[:port][/path] (letters, digits, . - _ /)"),
    _kind("image", r"[A-Za-z0-9/][A-Za-z0-9._/:@+-]*",  # Apptainer also runs a local SIF or sandbox path
          "an image reference such as nvidia/cuda:12.9.1-base-ubuntu22.04, docker://... or a local path (no spaces, not starting with -)"),
    _kind("user", _USER, "a user or group name (letters, digits, _ . -, not starting with - or a digit)"),
    _kind("name", r"[A-Za-z0-9_][A-Za-z0-9_.+@-]*", "a name (letters, digits, _ . + @ -, not starting with -)"),
    _kind("word", r"[A-Za-z0-9_./-]+", "one word (letters, digits, _ . / -)"),
    _kind("port", None, "a port number from 1 to 65535"),
    _kind("seconds", None, "a whole number of seconds, e.g. 600"),
    _kind("bool", None, "true or false"),
    _kind("secret", None, "a secret reference ({secret_env: NAME}, {secret_file: PATH} or {secret_ssm: /path})"),
    _kind("mapping", None, "a mapping whose keys and values are one line each (or true, false, numbers)"),
    _kind("line", r"[^\x00-\x1f\x7f]*", "one line of text (no newlines or other control characters)"),
    _kind("text", r"[^\x00-\x08\x0b-\x1f\x7f]*", "text (no control characters but newlines and tabs)"),
    _kind("any", None, "anything (its use quotes it)"),
]}

# Variables every host may have, beside the roles' own (whose kinds their meta.yml declares).
CONNECTION_KINDS = {
    "ansible_host": "host", "host": "host", "ansible_user": "user", "user": "user", "ansible_port": "port",
    "port": "port", "ssh_key": "path", "ansible_ssh_private_key_file": "path", "gateway": "address",
    "connection": "word", "ansible_connection": "word", "roles": "name", "sif_dir": "path",
    "apt_lock_timeout": "seconds",
}


def _scalar_ok(kind: Kind, value: Any) -> bool:
    if kind.name == "any":
        return True
    if kind.name == "bool":
        return isinstance(value, bool)
    if kind.name in ("port", "seconds"):
        if isinstance(value, bool):
            return False
        if isinstance(value, str) and re.fullmatch(r"[0-9]{1,9}", value):
            value = int(value)
        return isinstance(value, int) and (1 <= value <= 65535 if kind.name == "port" else value >= 0)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    return isinstance(value, str) and kind.source is not None and re.fullmatch(kind.source, value, re.S) is not None


def _mapping_problem(value: Any) -> tuple[Any, Kind] | None:
    """The first key or value in a mapping (nested mappings and lists too) that is not one line, true or false."""
    if isinstance(value, bool):
        return None
    if isinstance(value, dict):
        for item in [*value.keys(), *value.values()]:
            found = _mapping_problem(item)
            if found:
                return found
        return None
    if isinstance(value, (list, tuple)):
        return next(filter(None, map(_mapping_problem, value)), None)
    return problem("line", value)


def problem(kind_name: str, value: Any) -> tuple[Any, Kind] | None:
    """The first part of `value` (itself, or an item of a list) that is not of this kind, with the kind."""
    kind = KINDS[kind_name]
    if isinstance(value, str) and MARKER.search(value):
        value = MARKER.sub("***", value)
    if isinstance(value, Secret) or value is None or (value == "" and kind.name not in ("port", "seconds", "bool")):
        return None
    if isinstance(value, (list, tuple)) and kind.name not in ("any",):
        for item in value:
            found = problem(kind_name, item)
            if found:
                return found
        return None
    if kind.name == "secret":
        return None if isinstance(value, dict) and set(value) & {"secret_env", "secret_file", "secret_ssm"} else (value, kind)
    if kind.name == "mapping":  # its one use is JSON (daemon.json): true and false are values like any other
        return _mapping_problem(value) if isinstance(value, dict) else (value, kind)
    if isinstance(value, dict):
        if kind.name in ("any", "text", "line"):
            for item in list(value.keys()) + list(value.values()):
                found = problem(kind_name, item)
                if found:
                    return found
            return None
        return value, kind
    return None if _scalar_ok(kind, value) else (value, kind)


def describe(variable: str, bad: Any, kind: Kind, source: str) -> str:
    """The one line that refuses a value: where it came from, the variable, the value, what it may be."""
    where = getattr(bad, "where", "") or source
    if where == "-e":
        return f"-e {variable}: {str(bad)!r} is not {kind.says}"
    return f"{where}: variable {variable}: {str(bad)!r} is not {kind.says}"


def check_variables(variables: dict[str, Any], kinds: dict[str, str], source: str, error: type[Exception]) -> None:
    """Refuse any variable whose value is not of its declared kind; undeclared ones must be one-line text.

    `source` says where the variables came from when a value does not know its own file and line.
    """
    for name, value in variables.items():
        found = problem(kinds.get(name) or CONNECTION_KINDS.get(name) or "line", value)
        if found:
            raise error(describe(name, found[0], found[1], source))


def check_declared_kinds(kinds: Any, defaults: dict[str, Any], where: str, error: type[Exception]) -> dict[str, str]:
    """A role's `kinds:` (variable: kind) checked: known kinds, defined variables, defaults that fit."""
    if kinds is None:
        return {}
    if not isinstance(kinds, dict):
        raise error(f"{where}: kinds must map each variable to its kind ({', '.join(KINDS)})")
    for variable, kind in kinds.items():
        if kind not in KINDS:
            raise error(f"{where}: kinds: {variable}: unknown kind {kind!r} (kinds: {', '.join(KINDS)})")
        if variable not in defaults:
            raise error(f"{where}: kinds: {variable} is not defined in the role's defaults.yml")
        value = defaults[variable]
        if not _templated(value):
            found = problem(kind, value)
            if found:
                raise error(describe(variable, found[0], found[1], where))
    return {str(k): str(v) for k, v in kinds.items()}


def _templated(value: Any) -> bool:
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, (list, tuple)):
        return any(_templated(v) for v in value)
    if isinstance(value, dict):
        return any(_templated(v) for v in value.values())
    return False


def check_connection_variables(variables: dict[str, Any], host: str, error: type[Exception]) -> None:
    """Refuse a malformed address, user, port, key path or gateway of one host (before any connection)."""
    check_variables({k: v for k, v in variables.items() if k in CONNECTION_KINDS}, {}, f"host {host}", error)


def check_name(what: str, name: Any, where: str, error: type[Exception]) -> None:
    """Refuse a host or group name that could not stand as a name (in a file name, a comment, a message)."""
    found = problem("inventory_name", str(name))
    if found or not str(name):
        raise error(f"{where}: {what} name {str(name)!r} is not {KINDS['inventory_name'].says}")


def require(kind_name: str, value: Any, what: str, where: str, error: type[Exception]) -> None:
    """Refuse one operation argument that is not of its kind, naming the task and the argument."""
    found = problem(kind_name, value)
    if found:
        origin = getattr(found[0], "where", "")
        raise error(f"{where}: {what} {str(found[0])!r} is not {found[1].says}" + (f" (set at {origin})" if origin else ""))


RAW_SHELL_ARGS = ("shell", "unless_shell")
_EXPRESSION = re.compile(r"\{\{(.*?)\}\}", re.S)
_QUOTED = re.compile(r"(?:\|\s*(?:quote|secret_var)|map\(\s*['\"]quote['\"]\s*\)\s*\|\s*join\([^()]*\))\s*\Z")


def check_raw_shell(args: Any, where: str, error: type[Exception]) -> None:
    """Raw shell (`shell`, `unless_shell`) takes values only through a quoting filter (`| quote`, `| secret_var`)."""
    if not isinstance(args, dict):
        return
    for key in RAW_SHELL_ARGS:
        text = args.get(key)
        if not isinstance(text, str):
            continue
        for match in _EXPRESSION.finditer(text):
            expression = match.group(1).strip()
            if not _QUOTED.search(expression):
                raise error(f"{where}: {key}: raw shell takes values only through a quoting filter: "
                            f"write {{{{ {expression} | quote }}}} (or map('quote') | join(' ') for a list)")


def one_line(text: Any) -> str:
    """Text safe inside a `#` comment or a message: control characters shown as `?`."""
    return re.sub(r"[\x00-\x1f\x7f]", "?", str(text))
