"""invoke pull: `apptainer pull` of a registry image into a SIF on the cluster, as a Slurm job (or on the login node).

Registry credentials (the host's `registry_logins`, as the builder's) reach Apptainer only on the
stdin of `apptainer registry login --password-stdin`, run on the login host before the job: never
in an argv, the job script, the job's environment or Slurm's saved copy of either. The job then
uses Apptainer's own credential store in the user's home, which the cluster shares.
"""
from __future__ import annotations

import re
import shlex
import time as clock
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from provision.cluster import options as job_options
from provision.cluster.jobs import JobRequest, before_running, with_defaults
from provision.cluster.remote import (LOGS_SCRIPT, SUBMIT_SCRIPT, TILDE, LoginSession, heredoc, login_session,
                                      tail, values)
from provision.cluster.slurm import ClusterError, sbatch_error
from provision.connection import Timeouts
from provision.secrets import Secret, redactor, resolve_secrets

SOURCE = re.compile(r"^docker://[A-Za-z0-9][A-Za-z0-9._/:@-]*$")
SIF_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
PULL_LIMIT = 24 * 3600.0  # seconds a pull may take while we wait for it

# $1 source, $2 target SIF, $3 1 for --no-https, $4 APPTAINER_CACHEDIR, $5 APPTAINER_TMPDIR ('' for Apptainer's own).
# Pulls under a temporary name, hashes, renames; records sha256 size mtime inode as .NAME.sha256 beside
# it (the record submit checks), and drops a stale ship sidecar of an earlier file of that name.
PULL_BODY = r'''
source=$1 target=$2 nohttps=$3
[ -z "$4" ] || export APPTAINER_CACHEDIR="$4"
[ -z "$5" ] || export APPTAINER_TMPDIR="$5"
for dir in "${APPTAINER_CACHEDIR:-}" "${APPTAINER_TMPDIR:-}"; do [ -z "$dir" ] || mkdir -p "$dir" || exit 3; done
runtime=$(command -v apptainer || command -v singularity) || { echo "pull: neither apptainer nor singularity on $(hostname)" >&2; exit 127; }
dir=$(dirname -- "$target") name=$(basename -- "$target")
mkdir -p -- "$dir" || exit 3
partial="$dir/.$name.pulling.${SLURM_JOB_ID:-$$}"
flag=""
[ "$nohttps" = 1 ] && flag=--no-https
echo "pull: $source -> $target on $(hostname)"
"$runtime" pull $flag --force "$partial" "$source" || { rm -f -- "$partial"; exit 1; }
sum=$(sha256sum -- "$partial" | cut -d ' ' -f 1) || exit 1
mv -f -- "$partial" "$target" || exit 1
rm -f -- "$dir/.$name.ship"
printf '%s %s\n' "$sum" "$(stat -c '%s %Y %i' -- "$target")" > "$dir/.$name.sha256"
echo "sha256=$sum"
'''

# $1 the job script's path: written from the heredoc that precedes this, then submitted.
JOB_HEADER = "#!/bin/sh\n"


@dataclass(frozen=True)
class PullResult:
    """A SIF pulled on the cluster: where, by which job (or the login node), its sha256 ('' when not waited for)."""

    host: str
    source: str
    sif_path: str
    job_id: str
    sha256: str
    state: str

    def summary(self) -> str:
        where = f"job {self.job_id}" if self.job_id else "the login node"
        if not self.sha256:
            return f"pull of {self.source} on {self.host}: {where} {self.state.lower() or 'submitted'}; SIF {self.sif_path}"
        return f"pulled {self.source} on {self.host} by {where}: {self.sif_path} (sha256 {self.sha256[:16]}…)"


def source_of(source: str, images_dir: Path) -> str:
    """`docker://…` as given, or a recipe name: docker://REGISTRY/NAME:TAG from its recipe.yml (pushed earlier)."""
    if "://" not in source:
        from provision.pipeline.recipes import load_recipe
        recipe = load_recipe(source, images_dir)
        registry = recipe.values.get("registry")
        if not registry:
            raise ClusterError(f"pull {source}: images/{source}/recipe.yml has no registry: to pull it from; "
                               f"give docker://REGISTRY/{recipe.image}")
        source = f"docker://{str(registry).rstrip('/')}/{recipe.image}"
    if not SOURCE.match(source):
        raise ClusterError(f"pull {source!r}: a docker://REGISTRY/REPOSITORY:TAG reference (letters, digits, ._/:@-)")
    return source


def default_name(source: str) -> str:
    """As `apptainer pull` names it: the repository's last part and the tag (pytorch_25.06-py3)."""
    reference = source.split("://", 1)[1].split("@", 1)[0]
    last = reference.rsplit("/", 1)[-1]
    repository, _, tag = last.partition(":")
    return f"{repository}_{tag or 'latest'}"


def registry_of(source: str) -> str:
    from provision.pipeline.registry import registry_of as of_image
    return of_image(source.split("://", 1)[1])


def login_script(registry: str, host_vars: Mapping[str, Any], host: str) -> tuple[str, list[str]]:
    """Shell logging Apptainer in to `registry` with the host's registry_logins (the password in a heredoc on
    stdin of `registry login --password-stdin`), and the secret values it holds (for redaction).

    `apptainer registry login` has no --insecure (cmd/internal/cli/registry.go); a registry on a
    private address or localhost is spoken to over http by go-containerregistry on its own.
    """
    entry = (host_vars.get("registry_logins") or {}).get(registry)
    if entry is None:
        return "", []
    if not isinstance(entry, dict) or "password" not in entry:
        raise ClusterError(f"host {host}: registry_logins[{registry!r}] needs username and password")
    resolved = resolve_secrets(entry, host)
    password = resolved["password"]
    value = password.value if isinstance(password, Secret) else str(password)
    if "\n" in value:
        raise ClusterError(f"host {host}: registry_logins[{registry!r}]: a password cannot hold a newline")
    username = "$oauthtoken" if registry == "nvcr.io" else str(resolved.get("username", ""))
    marker, body = heredoc(value, "PROVISION_SECRET")
    words = ["registry", "login", "--username", username, "--password-stdin", f"docker://{registry}"]
    script = (f"\"$runtime\" {shlex.join(words)} >/dev/null <<'{marker}' || "
              f"{{ echo \"error=apptainer registry login {registry} failed\"; return 4; }}\n{body}{marker}\n")
    return script, [value]


def _login(session: LoginSession, source: str) -> list[str]:
    registry = registry_of(source)
    script, secrets = login_script(registry, session.host.vars, session.host.name)
    if script:
        body = "runtime=$(command -v apptainer || command -v singularity) || return 127\n" + script
        done = session.run(body)
        redact = redactor([Secret("password", s) for s in secrets])
        if done.status != 0:
            raise ClusterError(f"{session.host.name}: {redact(values(done.stdout).get('error', [''])[-1] or tail(done.stderr))}"
                               f" (exit {done.status})")
    return secrets


def pull(source: str, host: str, inventory_dir: Path, name: str | None = None, on_login: bool = False,
         wait: bool = True, nohttps: bool = False, partition: str | None = None, time: str | None = None,
         options: Mapping[str, Any] | None = None, images_dir: Path = Path("images"),
         on_line: Callable[[str], None] = print, poll: float = 2.0, accept_new: bool = False,
         timeouts: Timeouts = Timeouts()) -> PullResult:
    """Pull SOURCE into sif_dir/NAME.sif on `host`'s cluster: a Slurm job by default, else on the login node.

    Credentials first (registry login on the login host, password on stdin); then the job, whose
    output streams to on_line while we wait (unless not `wait`); the SIF's sha256 is recorded beside it.
    Cache and temporary directories: the host's apptainer_cachedir and apptainer_tmpdir (its scratch).
    """
    source = source_of(source, images_dir)
    name = name or default_name(source)
    if not SIF_NAME.match(name):
        raise ClusterError(f"pull --name {name!r}: letters, digits and ._- only")
    job_options.sbatch_lines(job_options.split(options or {})[1], "job options")
    with login_session(host, inventory_dir, accept_new, timeouts) as session:
        before_running(session, None, None)
        target = f"{_sif_dir(session)}/{name if name.endswith('.sif') else name + '.sif'}"
        secrets = _login(session, source)
        redact = redactor([Secret("password", s) for s in secrets])
        args = [source, target, "1" if nohttps else "0", str(session.host.vars.get("apptainer_cachedir") or ""),
                str(session.host.vars.get("apptainer_tmpdir") or "")]
        if on_login:
            return _on_login(session, source, target, args, lambda line: on_line(redact(line)))
        return _as_job(session, source, name, target, args, partition, time, options, images_dir, wait, poll,
                       lambda line: on_line(redact(line)))


def _sif_dir(session: LoginSession) -> str:
    """The host's sif_dir, made if missing, as an absolute path there (Slurm does not expand ~ in #SBATCH lines)."""
    done = session.run(TILDE + 'd=$(tilde "$1") && mkdir -p -- "$d" && cd -- "$d" && pwd -P', session.sif_dir)
    if done.status != 0 or not done.stdout.strip():
        raise ClusterError(f"{session.host.name}: cannot make sif_dir {session.sif_dir}: {tail(done.stderr)}")
    return done.stdout.strip().splitlines()[-1]


def _on_login(session: LoginSession, source: str, target: str, args: list[str],
              on_line: Callable[[str], None]) -> PullResult:
    lines: list[str] = []

    def keep(line: str) -> None:
        lines.append(line)
        on_line(line)
    done = session.run(PULL_BODY, *args, on_line=keep, timeout=PULL_LIMIT)
    found = values("\n".join(lines))
    if done.status != 0 or "sha256" not in found:
        raise ClusterError(f"{session.host.name}: apptainer pull {source} failed (exit {done.status}): "
                           f"{tail(done.stderr or chr(10).join(lines))}")
    return PullResult(session.host.name, source, target, "", found["sha256"][-1], "COMPLETED")


def _as_job(session: LoginSession, source: str, name: str, target: str, args: list[str], partition, time,
            options, images_dir: Path, wait: bool, poll: float, on_line: Callable[[str], None]) -> PullResult:
    host = session.host.name
    request = with_defaults(session, name, JobRequest(partition, None, time, (), ("true",), f"pull-{name}"),
                            images_dir, options)
    request.validate()
    directory = target.rsplit("/", 1)[0]
    output = f"{directory}/pull-{name}-%j.out"
    script_path = f"{directory}/pull-{name}-{clock.strftime('%Y%m%d-%H%M%S')}.sbatch"
    directives = [f"--job-name={request.job_name}", f"--output={output}"] + \
        [f"--{key}={value}" for key, value in (("partition", request.partition), ("time", request.time)) if value] + \
        list(request.sbatch_options)
    for directive in directives:
        if not job_options.DIRECTIVE_VALUE.match(directive):
            raise ClusterError(f"{directive!r} cannot stand in an #SBATCH line: choose a sif_dir without spaces or quotes")
    text = (JOB_HEADER + "".join(f"#SBATCH {d}\n" for d in directives)
            + f"# provision pull: {source} -> {target}\n" + "".join(f"{line}\n" for line in request.setup)
            + "set -- " + shlex.join(args) + "\n" + PULL_BODY)
    marker, body = heredoc(text)
    submit = f"cat > \"$1\" <<'{marker}' || return 3\n{body}{marker}\n{SUBMIT_SCRIPT}"
    done = session.run(submit, script_path)
    if done.status != 0:
        raise sbatch_error(host, done.stderr or done.stdout, {}, request.partition, None, request.time)
    job_id = done.stdout.strip().splitlines()[-1].split(";")[0] if done.stdout.strip() else ""
    if not job_id.isdigit():
        raise ClusterError(f"sbatch on {host}: no job id in its answer: {done.stdout.strip()[-200:]!r}")
    on_line(f"pull: job {job_id} submitted on {host}")
    if not wait:
        return PullResult(host, source, target, job_id, "", "SUBMITTED")
    lines: list[str] = []

    def keep(line: str) -> None:
        lines.append(line)
        on_line(line)
    followed = session.run(LOGS_SCRIPT, job_id, directory, "1", f"{poll:g}", on_line=keep, timeout=PULL_LIMIT)
    state = values(followed.stderr).get("state", [""])[-1]
    found = values("\n".join(lines))
    if state != "COMPLETED" or "sha256" not in found:
        raise ClusterError(f"{host}: pull job {job_id} ended {state or 'without a state'}: {tail(chr(10).join(lines))}")
    return PullResult(host, source, target, job_id, found["sha256"][-1], state)
