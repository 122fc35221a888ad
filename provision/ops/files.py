"""File operations: directory, file, template, line in file, JSON merge."""
from __future__ import annotations

import json

from provision.errors import RoleError
from provision.ops.base import (REQUIRED, OpContext, Step, file_state_check, octal_mode, operation, q,
                                write_file_sh)
from provision.values import require


def _checked(args: dict, ctx: OpContext, path_key: str = "path") -> None:
    """Paths, owners and groups are names on the host: refused unless of their kind."""
    require("abspath", args[path_key], f"{path_key}", ctx.where, RoleError)
    for key in ("owner", "group"):
        if key in args:
            require("user", args[key], key, ctx.where, RoleError)


def _owner(args: dict) -> tuple[str, str]:
    return str(args["owner"]), str(args["group"] or args["owner"])


@operation("directory", path=REQUIRED, mode="0755", owner="root", group="")
def directory(args: dict, ctx: OpContext) -> Step:
    """A directory with this mode and ownership (parents created as needed)."""
    _checked(args, ctx)
    path, mode = args["path"], octal_mode(args["mode"], ctx.where)
    owner, group = _owner(args)
    return Step(
        check=f"[ -d {q(path)} ] && [ \"$(stat -c '%a %U %G' {q(path)})\" = {q(f'{mode} {owner} {group}')} ]",
        apply=f"mkdir -p {q(path)} && chmod {mode} {q(path)} && chown {q(owner)}:{q(group)} {q(path)}",
        ok_reason=f"{path} is a directory, mode {mode}, {owner}:{group}",
        change=f"create {path} (mode {mode}, {owner}:{group})",
    )


def file_step(path: str, content: bytes, mode: str, owner: str, group: str) -> Step:
    """The step shared by file and template: this exact content, mode and ownership."""
    return Step(
        check=file_state_check(path, content, mode, owner, group),
        apply=f"mkdir -p {q(path.rsplit('/', 1)[0] or '/')}\n{write_file_sh(path, content, mode, owner, group)}",
        ok_reason=f"{path} up to date",
        change=f"write {path} ({len(content)} bytes, mode {mode}, {owner}:{group})",
        path=path,
        desired=content,
    )


@operation("file", path=REQUIRED, content=None, state="present", mode="0644", owner="root", group="")
def file(args: dict, ctx: OpContext) -> Step:
    """A file with exactly this content, mode and ownership; or no file at all (state: absent)."""
    _checked(args, ctx)
    path = args["path"]
    if args["state"] == "absent":
        return Step(check=f"[ ! -e {q(path)} ]", apply=f"rm -f {q(path)}",
                    ok_reason=f"{path} absent", change=f"remove {path}")
    if args["content"] is None:
        raise RoleError(f"{ctx.where}: file {path} needs content (or state: absent)")
    owner, group = _owner(args)
    return file_step(path, str(args["content"]).encode(), octal_mode(args["mode"], ctx.where), owner, group)


@operation("template", src=REQUIRED, dest=REQUIRED, mode="0644", owner="root", group="")
def template(args: dict, ctx: OpContext) -> Step:
    """A file rendered from the role's templates/ with the host's variables and facts."""
    _checked(args, ctx, "dest")
    owner, group = _owner(args)
    content = ctx.render_template(args["src"]).encode()
    return file_step(args["dest"], content, octal_mode(args["mode"], ctx.where), owner, group)


@operation("line", path=REQUIRED, line=REQUIRED, regexp="", state="present", mode="0644")
def line(args: dict, ctx: OpContext) -> Step:
    """One line in a file: replaces the lines matching `regexp` (ERE), else appended; or removed."""
    _checked(args, ctx)
    require("line", [args["line"], args["regexp"]], "line", ctx.where, RoleError)
    path, text, regexp = args["path"], str(args["line"]), args["regexp"]
    env = f"PROV_LINE={q(text)} PROV_RE={q(regexp)}"
    if args["state"] == "absent":
        return Step(
            check=f"! grep -qxF -- {q(text)} {q(path)} 2>/dev/null",
            apply=f"{env} awk '$0 != ENVIRON[\"PROV_LINE\"]' {q(path)} > \"$prov_run/line\" "
                  f"&& cat \"$prov_run/line\" > {q(path)}",
            ok_reason=f"{path} lacks the line", change=f"remove a line from {path}",
        )
    others = f" && ! grep -E -- {q(regexp)} {q(path)} | grep -qvxF -- {q(text)}" if regexp else ""
    mode = octal_mode(args["mode"], ctx.where)
    program = (
        'BEGIN { line = ENVIRON["PROV_LINE"]; re = ENVIRON["PROV_RE"] } '
        're != "" && $0 ~ re { if (!done) print line; done = 1; next } '
        '$0 == line { if (!done) print; done = 1; next } { print } '
        'END { if (!done) print line }'
    )
    return Step(
        check=f"grep -qxF -- {q(text)} {q(path)} 2>/dev/null{others}",
        apply=(
            f"[ -e {q(path)} ] || {{ : > {q(path)} && chmod {mode} {q(path)}; }}\n"
            f"{env} awk {q(program)} {q(path)} > \"$prov_run/line\" && cat \"$prov_run/line\" > {q(path)}"
        ),
        ok_reason=f"{path} has the line",
        change=f"set a line in {path}",
    )


@operation("json_merge", path=REQUIRED, data=REQUIRED, mode="0644")
def json_merge(args: dict, ctx: OpContext) -> Step:
    """Merge keys into a JSON object file, keeping every key it does not name (never written whole)."""
    if not isinstance(args["data"], dict):
        raise RoleError(f"{ctx.where}: json_merge data must be a mapping, got {args['data']!r}")
    _checked(args, ctx)
    path, mode = args["path"], octal_mode(args["mode"], ctx.where)
    patch = json.dumps(args["data"], indent=2) + "\n"
    write_patch = f"printf '%s' {q(patch)} > \"$prov_run/patch.json\""
    merged = f"prov_json_merge {q(path)} \"$prov_run/patch.json\""
    return Step(
        check=(
            f"[ -e {q(path)} ] || exit 1\n{write_patch}\n"
            f"printf '{{}}' > \"$prov_run/empty.json\"\n"
            f"[ \"$({merged})\" = \"$(prov_json_merge {q(path)} \"$prov_run/empty.json\")\" ]"
        ),
        apply=(
            f"{write_patch}\nmkdir -p {q(path.rsplit('/', 1)[0] or '/')}\n"
            f"{merged} > \"$prov_run/merged.json\" || exit 1\n"
            f"[ -e {q(path)} ] || {{ : > {q(path)} && chmod {mode} {q(path)}; }}\n"
            f"cat \"$prov_run/merged.json\" > {q(path)}"
        ),
        ok_reason=f"{path} has every key it should",
        change=f"merge {', '.join(args['data'])} into {path}",
        path=path,
        desired_sh=f"{write_patch}\n{merged}",
    )
