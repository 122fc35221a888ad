"""apt operations: packages (present, absent, pinned, held) and repositories (key + source)."""
from __future__ import annotations

from provision.errors import RoleError
from provision.ops.base import REQUIRED, OpContext, Step, as_list, operation, q, sh_join, write_file_sh
from provision.values import require

SOURCE_DIR = "/etc/apt/sources.list.d"


@operation("apt_packages", names=REQUIRED, state="present", hold=False, cache_valid_time=3600,
           install_recommends=False, purge=False, until_installed="", version="")
def apt_packages(args: dict, ctx: OpContext) -> Step:
    """Install (all missing in one apt call), pin to versions, hold, or remove Debian packages.

    `names` may pin each package (`name=version`); `version` pins them all to one version.
    """
    specs = as_list(args["names"], "names", ctx.where)
    if args["version"]:
        specs = [f"{spec.split('=', 1)[0]}={args['version']}" for spec in specs]
    require("package", specs, "apt_packages names", ctx.where, RoleError)
    require("package", args["until_installed"], "apt_packages until_installed", ctx.where, RoleError)
    names = [spec.split("=", 1)[0] for spec in specs]
    if args["state"] == "absent":
        verb = "purge" if args["purge"] else "remove"
        check = f'[ -z "$(prov_pkg_present {sh_join(names)})" ]'
        reason = f"{', '.join(names)} not installed"
        if args["until_installed"]:
            # Vendors say: remove these before the first install of theirs; after it, leave them be.
            check = f'[ -z "$(prov_pkg_missing {q(args["until_installed"])})" ] || {check}'
            reason += f" (or {args['until_installed']} already installed)"
        return Step(
            check=check,
            apply=f"# shellcheck disable=SC2046\nprov_apt {verb} $(prov_pkg_present {sh_join(names)})",
            ok_reason=reason,
            change=f"{verb} {', '.join(names)}",
        )
    if args["state"] != "present":
        raise RoleError(f"{ctx.where}: apt_packages state must be present or absent, got {args['state']!r}")
    check = f'[ -z "$(prov_pkg_missing {sh_join(specs)})" ]'
    apply = (
        f"prov_missing=$(prov_pkg_missing {sh_join(specs)})\n"
        f"if [ -n \"$prov_missing\" ]; then\n"
        f"  # shellcheck disable=SC2086\n"
        f"  prov_apt_refresh {int(args['cache_valid_time'])} $prov_missing || exit 1\n"
        f"  # shellcheck disable=SC2086\n"
        f"  prov_apt install {'' if args['install_recommends'] else '--no-install-recommends '}"
        f"--allow-downgrades --allow-change-held-packages $prov_missing || exit 1\n"
        f"fi"
    )
    if args["hold"]:
        held = f'[ -z "$(prov_pkg_unheld {sh_join(names)})" ]'
        check = f"{check} && {held}"
        apply = f"{apply}\napt-mark hold {sh_join(names)} > /dev/null || exit 1"
    return Step(
        check=check,
        apply=apply,
        ok_reason=f"{', '.join(specs)} installed" + (" and held" if args["hold"] else ""),
        change=f"install {', '.join(specs)}" + (" and hold them" if args["hold"] else ""),
    )


@operation("apt_repo", name=REQUIRED, uri=REQUIRED, key_url="", key="", key_path="", dearmor=False,
           suites="", components=["main"], architectures="", format="deb822", remove_files=[])
def apt_repo(args: dict, ctx: OpContext) -> Step:
    """An apt source with its signing key (signed-by), replacing other entries for the same URI."""
    where, name, uri = ctx.where, args["name"], args["uri"].rstrip("/")
    require("name", name, "apt_repo name", where, RoleError)
    require("url", uri, "apt_repo uri", where, RoleError)
    require("url", args["key_url"], "apt_repo key_url", where, RoleError)
    require("abspath", args["key_path"], "apt_repo key_path", where, RoleError)
    require("abspath", args["remove_files"], "apt_repo remove_files", where, RoleError)
    if bool(args["key_url"]) == bool(args["key"]):
        raise RoleError(f"{where}: apt_repo {name} needs exactly one of key_url or key")
    key_path = args["key_path"] or f"/etc/apt/keyrings/{name}.{'gpg' if args['dearmor'] else 'asc'}"
    suites = as_list(args["suites"] or ctx.facts.get("os_codename", ""), "suites", where)
    components = as_list(args["components"], "components", where)
    arches = as_list(args["architectures"] or ctx.facts.get("arch", ""), "architectures", where)
    for what, words in (("suites", suites), ("components", components), ("architectures", arches)):
        require("word", words, f"apt_repo {what}", where, RoleError)
    if args["format"] == "deb822":
        source_path = f"{SOURCE_DIR}/{name}.sources"
        lines = ["Types: deb", f"URIs: {uri}", f"Suites: {' '.join(suites)}"]
        if components:
            lines.append(f"Components: {' '.join(components)}")
        lines += [f"Architectures: {' '.join(arches)}", f"Signed-By: {key_path}"]
        text = "\n".join(lines) + "\n"
    elif args["format"] == "one-line":
        source_path = f"{SOURCE_DIR}/{name}.list"
        text = "".join(
            f"deb [arch={','.join(arches)} signed-by={key_path}] {uri} {suite} {' '.join(components)}".rstrip() + "\n"
            for suite in suites
        )
    else:
        raise RoleError(f"{where}: apt_repo format must be deb822 or one-line, got {args['format']!r}")
    content = text.encode()
    stale = _stale_sources_sh(uri, source_path, as_list(args["remove_files"], "remove_files", where))
    key_check = f"[ -s {q(key_path)} ]"
    if args["key"]:
        key_check = f"[ \"$(cat {q(key_path)} 2>/dev/null)\" = {q(args['key'].strip())} ]"
    check = (
        f"{key_check} && [ \"$(cat {q(source_path)} 2>/dev/null)\" = {q(text.rstrip())} ] "
        f"&& [ -z \"$({stale})\" ]"
    )
    apply = "\n".join([
        f"mkdir -p {q(key_path.rsplit('/', 1)[0])} && chmod 755 {q(key_path.rsplit('/', 1)[0])}",
        _key_sh(args, key_path),
        write_file_sh(source_path, content, "644", "root", "root"),
        f"for prov_old in $({stale}); do",
        "  case $prov_old in",
        "    /etc/apt/sources.list) sed -i " + q(f"\\|{uri}|s|^\\([^#]\\)|# disabled by provision: \\1|")
        + " /etc/apt/sources.list ;;",
        "    *.list|*.sources) mv -f \"$prov_old\" \"$prov_old.disabled-by-provision\" ;;",
        "    *) rm -f \"$prov_old\" ;;",
        "  esac",
        "done",
        'mkdir -p "$PROV_STATE" && : > "$PROV_STATE/apt-sources-changed"',
    ])
    return Step(
        check=check,
        apply=apply,
        ok_reason=f"{source_path} and {key_path} in place",
        change=f"write {source_path} and {key_path}",
        path=source_path,
        desired=content,
    )


def _key_sh(args: dict, key_path: str) -> str:
    """Shell that puts the signing key at key_path: given inline, or fetched by apt's own downloader."""
    if args["key"]:
        return write_file_sh(key_path, args["key"].strip().encode() + b"\n", "644", "root", "root")
    fetch = f"/usr/lib/apt/apt-helper download-file {q(args['key_url'])} \"$prov_run/key\" || exit 1"
    if args["dearmor"]:
        place = f"gpg --batch --yes --dearmor -o {q(key_path)} \"$prov_run/key\" || exit 1"
    else:
        place = f"cp \"$prov_run/key\" {q(key_path)} || exit 1"
    return f"{fetch}\n{place}\nchmod 644 {q(key_path)}"


def _stale_sources_sh(uri: str, own_path: str, legacy: list[str]) -> str:
    """Shell printing other source files (and legacy files) that would clash with ours."""
    return f"prov_stale_sources {q(uri)} {q(own_path)} {sh_join(legacy)}".rstrip()


@operation("dpkg_repair")
def dpkg_repair(args: dict, ctx: OpContext) -> Step:
    """Finish a dpkg run that was cut short (killed apt, power cut, reboot), before any apt step.

    Without it apt refuses every later run: "dpkg was interrupted, you must manually run
    'dpkg --configure -a'". The compiler puts this step first in every plan that uses apt.
    """
    return Step(
        check="! prov_dpkg_interrupted",
        apply="prov_dpkg_repair",
        ok_reason="dpkg was not interrupted",
        change="repair an interrupted dpkg (dpkg --configure -a, then apt-get -f install)",
    )
