"""The operation contract: validated arguments in, one guarded shell step (check, apply) out."""
from __future__ import annotations

import base64
import hashlib
import shlex
from dataclasses import dataclass
from typing import Any, Callable

from provision.errors import RoleError
from provision.secrets import MARKER_BYTES

OPERATIONS: dict[str, "Operation"] = {}

REQUIRED = object()


@dataclass(frozen=True)
class Step:
    """One guarded shell step.

    `check` exits 0 when the host is already as wanted (77: not applicable here, with a reason
    on its last output line); `apply` gets it there. `ok_reason` says why nothing was needed.
    File-like steps name `path` and carry `desired` bytes (or `desired_sh`, shell that prints
    them on the host) so check and diff modes can show what would change. `control` asks the controller to act after the step: reboot or reconnect.
    """

    check: str
    apply: str
    ok_reason: str
    change: str
    path: str | None = None
    desired: bytes | None = None
    desired_sh: str | None = None
    control: str | None = None
    recheck: bool = True
    holds_secrets: bool = False  # its current content never travels back (it may hold an older secret)


@dataclass(frozen=True)
class OpContext:
    """What an operation may read while compiling: facts, where its task is, a template renderer."""

    facts: dict
    where: str
    render_template: Callable[[str], str]
    use_secret: Callable[[str], str] | None = None  # a secret's name -> its shell variable, set on the host


@dataclass(frozen=True)
class Operation:
    """An operation's name, its argument schema and its step builder."""

    name: str
    args: dict[str, Any]
    build: Callable[[dict, OpContext], Step]
    doc: str = ""

    def validate(self, args: Any, where: str) -> dict:
        """Return args with defaults filled; refuse unknown or missing ones naming `where`."""
        if args is None:
            args = {}
        if not isinstance(args, dict):
            raise RoleError(f"{where}: {self.name} takes a mapping of arguments, got {args!r}")
        unknown = sorted(set(args) - set(self.args))
        if unknown:
            raise RoleError(
                f"{where}: unknown argument '{unknown[0]}' for {self.name} "
                f"(it takes: {', '.join(sorted(self.args))})"
            )
        missing = [name for name, default in self.args.items() if default is REQUIRED and name not in args]
        if missing:
            raise RoleError(f"{where}: {self.name} needs argument '{missing[0]}'")
        full = {name: default for name, default in self.args.items() if default is not REQUIRED}
        full.update(args)
        return full


def operation(op_name: str, /, **args: Any):
    """Register a step builder as operation `op_name` with its arguments and their defaults."""

    def register(build: Callable[[dict, OpContext], Step]):
        OPERATIONS[op_name] = Operation(op_name, args, build, (build.__doc__ or "").strip())
        return build

    return register


def q(value: Any) -> str:
    """Quote one value for sh: the only way arguments enter a script."""
    return shlex.quote(str(value))


def sh_join(argv: list) -> str:
    """Join an argument vector for sh, quoting each element once."""
    return " ".join(q(arg) for arg in argv)


def as_list(value: Any, what: str, where: str) -> list[str]:
    """A string or a list of strings, as a list; anything else is refused naming `where`."""
    if isinstance(value, str):
        return value.split()
    if isinstance(value, (list, tuple)) and all(isinstance(v, (str, int, float)) for v in value):
        return [str(v) for v in value]
    raise RoleError(f"{where}: {what} must be a string or a list of strings, got {value!r}")


def octal_mode(value: Any, where: str) -> str:
    """A file mode as stat prints it (`%a`): '0644' gives '644'.

    Modes must be quoted strings: YAML reads an unquoted 0644 as the integer 420.
    """
    if not isinstance(value, str):
        raise RoleError(f"{where}: mode {value!r} must be a quoted string such as '0644'")
    try:
        return format(int(value, 8), "o")
    except ValueError:
        raise RoleError(f"{where}: mode {value!r} is not an octal file mode") from None


def write_file_sh(path: str, content: bytes, mode: str, owner: str, group: str) -> str:
    """Shell that writes `content` to `path` atomically (temporary file, then rename)."""
    encoded = base64.encodebytes(content).decode()
    return (
        f"prov_tmp=$(mktemp {q(path)}.provision.XXXXXX) || exit 1\n"
        f"base64 -d > \"$prov_tmp\" <<'PROV_EOF'\n{encoded}PROV_EOF\n"
        f"if ! {{ chmod {mode} \"$prov_tmp\" && chown {q(owner)}:{q(group)} \"$prov_tmp\" "
        f"&& mv -f \"$prov_tmp\" {q(path)}; }}; then rm -f \"$prov_tmp\"; exit 1; fi"
    )


def secret_content_sh(content: bytes, ctx: "OpContext") -> str:
    """Shell printing `content` with each secret marker replaced by the secret's value on the host.

    The value comes from its shell variable through printf (a shell builtin): never in argv.
    """
    parts = MARKER_BYTES.split(content)
    lines = []
    for index, part in enumerate(parts):
        if index % 2:
            if ctx.use_secret is None:
                raise RoleError(f"{ctx.where}: a secret cannot be written here")
            lines.append(f"printf '%s' \"${ctx.use_secret(part.decode())}\"")
        elif part:
            lines.append(f"base64 -d <<'PROV_EOF'\n{base64.encodebytes(part).decode()}PROV_EOF")
    return "{\n" + "\n".join(lines or [":"]) + "\n}"


def file_state_check(path: str, content: bytes | None, mode: str, owner: str, group: str) -> str:
    """Shell that exits 0 when `path` has this content (when given), mode and ownership."""
    parts = [f"[ -f {q(path)} ]"]
    if content is not None:
        digest = hashlib.sha256(content).hexdigest()
        parts.append(f"[ \"$(sha256sum < {q(path)})\" = '{digest}  -' ]")  # one process: stdin's sum ends "  -"
    parts.append(f"[ \"$(stat -c '%a %U %G' {q(path)})\" = {q(f'{mode} {owner} {group}')} ]")
    return " && ".join(parts)
