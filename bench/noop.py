"""The no-op benchmark: re-running converged hosts with provision, ansible-playbook and pyinfra, on 1, 9 and 50 lab hosts.

Run by hand as root from anywhere: `python bench/noop.py [--hosts 1,9,50] [--repeat 5] [--json results.json]`.
It makes (or reuses) two virtualenvs with ansible-core and pyinfra from PyPI, brings up lab hosts
bench1..benchN (N the largest count), converges them once with each tool, then times each tool's
re-run, which must report zero changes: a timed run that changed something fails the benchmark.
Every tool runs all the hosts of a count at once (provision --parallel, ansible --forks, pyinfra --parallel).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

BENCH = Path(__file__).resolve().parent
PROJECT = BENCH.parent
EQUIVALENTS = BENCH / "equivalents"
DEFAULT_CACHE = Path("/var/cache/provision-bench")  # the venvs, reused from run to run
HOST_COUNTS = (1, 9, 50)
TOOLS = ("provision", "ansible", "pyinfra", "ssh true")
TARGETS = (  # (what, measured as, comparison, bound)
    ("provision >= 15x faster than ansible-playbook, 1 host", "ansible/provision 1 host", ">=", 15.0),
    ("provision >= 3x faster than pyinfra, 1 host", "pyinfra/provision 1 host", ">=", 3.0),
    ("provision on 50 hosts within 2x of 1 host", "provision 50/1 hosts", "<=", 2.0),
)


def bench_hosts(count: int) -> list[str]:
    return [f"bench{i}" for i in range(1, count + 1)]

sys.path.insert(0, str(PROJECT))


class BenchError(Exception):
    """The benchmark cannot give a meaningful figure (a tool failed, or a no-op run changed things)."""


@dataclass
class Run:
    """One timed command and what it printed."""

    seconds: float
    returncode: int
    stdout: str
    stderr: str

    def tail(self, lines: int = 15) -> str:
        return "\n".join((self.stdout + self.stderr).strip().splitlines()[-lines:])


@dataclass
class Tool:
    """A tool under test: the command for some hosts, and how to read the changes out of its output."""

    name: str
    command: Callable[[list[str]], list[str]]
    changes: Callable[[Run, list[str]], dict[str, int]]  # host -> changed count; BenchError on failure
    env: dict[str, str] = field(default_factory=dict)
    version: str = ""


def timed(argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> Run:
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, env={**os.environ, **(env or {})})
    return Run(time.perf_counter() - started, done.returncode, done.stdout, done.stderr)


# -- the tools' environments ------------------------------------------------------------------

def ensure_venv(cache: Path, name: str, package: str, executable: str) -> Path:
    """A virtualenv under `cache` with `package` from PyPI; returns its executable (reused when present)."""
    venv = cache / name
    exe = venv / "bin" / executable
    if exe.exists():
        return exe
    venv.parent.mkdir(parents=True, exist_ok=True)
    for argv, what in (([sys.executable, "-m", "venv", str(venv)], "making the venv"),
                       ([str(venv / "bin" / "pip"), "install", "-q", package], f"pip install {package}")):
        run = timed(argv)
        if run.returncode != 0:
            raise BenchError(f"{what} in {venv} failed ({run.returncode}):\n{run.tail()}")
    return exe


def lab_hosts(names: list[str]):
    """The lab, with `names` up (kept as they are if already up)."""
    from provision.lab.lab import Lab

    lab = Lab()
    with lab.exclusive(wait=600):
        up = lab.up(names)
    return lab, {h.name: h.address for h in up}


def known_hosts_for(lab, addresses: dict[str, str]) -> str:
    wanted = set(addresses.values())
    lines = lab.known_hosts_path.read_text().splitlines()
    kept = [line for line in lines if line.split(" ", 1)[0].strip("[]").split("]")[0] in wanted]
    if len(kept) < len(wanted):
        raise BenchError(f"{lab.known_hosts_path} lacks host keys for some of {sorted(wanted)}")
    return "\n".join(kept) + "\n"


def ensure_python(lab, names: list[str]) -> None:
    """ansible's modules run Python on the host: python3 and python3-apt, through the proxy base set up."""
    script = ("command -v python3 > /dev/null && python3 -c 'import apt' 2>/dev/null || "
              "{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
              "--no-install-recommends python3 python3-apt > /dev/null; }")
    with ThreadPoolExecutor(min(len(names), 8)) as pool:  # 50 apt runs at once swamp a small machine
        list(pool.map(lambda name: lab.exec(name, script), names))


# -- provision ---------------------------------------------------------------------------------

def provision_files(work: Path, lab, addresses: dict[str, str], known_hosts: str) -> tuple[Path, Path]:
    """An inventory dir (inventory.yml + known_hosts) and a roles dir: the project's roles + bench_noop."""
    import yaml

    inventory = work / "provision"
    inventory.mkdir()
    data = {"all": {"vars": {"ssh_key": str(lab.client_key), "base_apt_proxy": proxy_url(), "roles": ["bench_noop"]},
                    "children": {"bench": {"hosts": {name: {"ansible_host": address, "ansible_user": "root"}
                                                     for name, address in addresses.items()}}}}}
    (inventory / "inventory.yml").write_text(yaml.safe_dump(data, sort_keys=False))
    (inventory / "known_hosts").write_text(known_hosts)
    roles = work / "roles"
    shutil.copytree(PROJECT / "roles", roles)
    shutil.copytree(EQUIVALENTS / "provision_role" / "bench_noop", roles / "bench_noop")
    return inventory, roles


def proxy_url() -> str:
    from provision.lab.aptcache import PROXY_URL

    return PROXY_URL


def provision_tool(inventory: Path, roles: Path) -> Tool:
    def command(hosts: list[str]) -> list[str]:
        return [sys.executable, str(Path(__file__).resolve().with_name("provision_once.py")),
                str(inventory), str(roles), ",".join(hosts)]

    def changes(run: Run, hosts: list[str]) -> dict[str, int]:
        try:
            results = json.loads(run.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            raise BenchError(f"provision printed no results ({run.returncode}):\n{run.tail()}") from None
        failed = {h: r["error"] for h, r in results.items() if r["status"] not in ("ok", "changed")}
        if failed or sorted(results) != sorted(hosts):
            raise BenchError(f"provision failed on {sorted(failed) or 'some hosts'}: {failed or results}")
        return {h: r["changed"] for h, r in results.items()}

    return Tool("provision", command, changes, version=git_version())


def git_version() -> str:
    head = timed(["git", "-C", str(PROJECT), "rev-parse", "--short", "HEAD"])
    return f"git {head.stdout.strip()}" if head.returncode == 0 else "unknown"


# -- ansible-playbook --------------------------------------------------------------------------

RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def ansible_tool(playbook_exe: Path, work: Path, lab, addresses: dict[str, str], known_hosts_file: Path) -> Tool:
    import yaml

    ssh_args = f"-o UserKnownHostsFile={known_hosts_file} -o StrictHostKeyChecking=yes"
    data = {"all": {"vars": {"ansible_user": "root", "ansible_ssh_private_key_file": str(lab.client_key),
                             "ansible_ssh_extra_args": ssh_args, "base_apt_proxy": proxy_url()},
                    "children": {"bench": {"hosts": {n: {"ansible_host": a} for n, a in addresses.items()}}}}}
    inventory = work / "ansible-inventory.yml"
    inventory.write_text(yaml.safe_dump(data, sort_keys=False))
    playbook = EQUIVALENTS / "ansible" / "playbook.yml"

    def command(hosts: list[str]) -> list[str]:
        return [str(playbook_exe), "-i", str(inventory), "--forks", str(len(hosts)), "--limit", ",".join(hosts),
                str(playbook)]

    def changes(run: Run, hosts: list[str]) -> dict[str, int]:
        recap = {m[1]: (int(m[3]), int(m[4]), int(m[5])) for m in RECAP.finditer(run.stdout)}
        bad = {h: v for h, v in recap.items() if v[1] or v[2]}
        if run.returncode != 0 or bad or sorted(recap) != sorted(hosts):
            raise BenchError(f"ansible-playbook failed ({run.returncode}) on {sorted(bad) or hosts}:\n{run.tail()}")
        return {h: v[0] for h, v in recap.items()}

    env = {"ANSIBLE_CONFIG": str(EQUIVALENTS / "ansible" / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    version = timed([str(playbook_exe), "--version"], env).stdout.splitlines()[0]
    return Tool("ansible", command, changes, env, version)


# -- pyinfra -----------------------------------------------------------------------------------

PYINFRA_OP_LINE = re.compile(r"^\s*\[([^\]]+)\]\s+(.*)$", re.M)


def pyinfra_tool(pyinfra_exe: Path, work: Path, lab, addresses: dict[str, str], known_hosts_file: Path) -> Tool:
    hosts = [(name, {"ssh_hostname": address, "ssh_user": "root", "ssh_key": str(lab.client_key),
                     "ssh_known_hosts_file": str(known_hosts_file), "ssh_strict_host_key_checking": "yes",
                     "base_apt_proxy": proxy_url()}) for name, address in addresses.items()]
    inventory = work / "pyinfra_inventory.py"
    inventory.write_text(f"bench = {hosts!r}\n")
    deploy = EQUIVALENTS / "pyinfra" / "deploy.py"

    def command(names: list[str]) -> list[str]:
        limits = [arg for name in names for arg in ("--limit", name)]  # one name per --limit
        return [str(pyinfra_exe), "-y", "--parallel", str(len(names)), *limits, str(inventory), str(deploy)]

    def changes(run: Run, names: list[str]) -> dict[str, int]:
        if run.returncode != 0:
            raise BenchError(f"pyinfra failed ({run.returncode}):\n{run.tail()}")
        return pyinfra_changes(run.stdout + run.stderr, names)  # pyinfra 3 logs to stderr

    said = timed([str(pyinfra_exe), "--version"])
    version = (said.stdout + said.stderr).strip()
    return Tool("pyinfra", command, changes, {"PYINFRA_PROGRESS": "off", "NO_COLOR": "1"}, version)


def pyinfra_changes(output: str, names: list[str]) -> dict[str, int]:
    """Per host, the operations that did not say "No changes" in the run's '[host] ...' lines."""
    run = output.partition("--> Beginning operation run")[2].partition("--> Results")[0]
    counted = {name: 0 for name in names}
    seen = {name: 0 for name in names}
    for name, said in PYINFRA_OP_LINE.findall(run):
        if name in counted:
            seen[name] += 1
            counted[name] += said.strip() != "No changes"
    if not all(seen.values()):
        raise BenchError(f"pyinfra: no operation results for {[n for n, c in seen.items() if not c]}:\n"
                         f"{output[-2000:]}")
    return counted


# -- bare ssh ----------------------------------------------------------------------------------

def ssh_tool(lab, addresses: dict[str, str], known_hosts_file: Path) -> Tool:
    """`ssh root@host true` on every host at once: the floor any SSH-based tool stands on."""
    def command(names: list[str]) -> list[str]:
        one = ("ssh -i {key} -o BatchMode=yes -o UserKnownHostsFile={kh} -o StrictHostKeyChecking=yes "
               "root@{address} true")
        lines = [one.format(key=lab.client_key, kh=known_hosts_file, address=addresses[n]) + " &" for n in names]
        return ["sh", "-c", "\n".join(lines) + "\nfail=0; for p in $(jobs -p); do wait $p || fail=1; done; "
                "wait; exit $fail"]

    def changes(run: Run, names: list[str]) -> dict[str, int]:
        if run.returncode != 0:
            raise BenchError(f"ssh true failed ({run.returncode}):\n{run.tail()}")
        return {n: 0 for n in names}

    version = timed(["ssh", "-V"]).stderr.strip()
    return Tool("ssh true", command, changes, version=version)


# -- converge, measure, report -----------------------------------------------------------------

def converge(tool: Tool, hosts: list[str]) -> None:
    run = timed(tool.command(hosts), tool.env)
    tool.changes(run, hosts)  # raises when the tool failed


def measure(tool: Tool, hosts: list[str]) -> float:
    """One no-op run's wall time; BenchError when it failed or changed anything."""
    run = timed(tool.command(hosts), tool.env)
    changed = {h: n for h, n in tool.changes(run, hosts).items() if n}
    if changed:
        raise BenchError(f"{tool.name}'s no-op run changed things (changes per host: {changed}); a timed "
                         f"run that changes things measures nothing (did the tools converge the hosts to different "
                         f"states, or did something else change them?):\n"
                         f"{run.tail(30)}")
    return run.seconds


def ratios(medians: dict[str, dict[int, float]]) -> dict[str, float]:
    found = {}
    base = medians.get("provision", {})
    for name in ("ansible", "pyinfra", "ssh true"):
        for n in medians.get(name, {}):
            if base.get(n):
                found[f"{name}/provision {n} host{'s' if n > 1 else ''}"] = medians[name][n] / base[n]
    for name, figures in medians.items():
        for n in figures:
            if n > 1 and figures.get(1):
                found[f"{name} {n}/1 hosts"] = figures[n] / figures[1]
    return found


def target_rows(found: dict[str, float]) -> list[dict]:
    rows = []
    for what, key, comparison, bound in TARGETS:
        value = found.get(key)
        met = None if value is None else (value >= bound if comparison == ">=" else value <= bound)
        rows.append({"target": what, "measured_as": key, "bound": f"{comparison} {bound:g}",
                     "measured": value, "met": met})
    return rows


def print_report(medians: dict[str, dict[int, float]], found: dict[str, float], targets: list[dict],
                 skipped: dict[str, str], repeat: int) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False, width=160)
    table = Table(title=f"No-op re-run, median wall seconds of {repeat}")
    counts = sorted({n for figures in medians.values() for n in figures})
    table.add_column("tool")
    for n in counts:
        table.add_column(f"{n} host{'s' if n > 1 else ''} (s)", justify="right")
    for n in counts[1:]:
        table.add_column(f"{n}/1", justify="right")
    for n in counts:
        table.add_column(f"x provision, {n}", justify="right")
    for name, figures in medians.items():
        vs = [found.get(f"{name}/provision {n} host{'s' if n > 1 else ''}") for n in counts]
        table.add_row(name, *(f"{figures[n]:.2f}" for n in counts), *(f"{figures[n] / figures[1]:.2f}" for n in counts[1:]),
                      *("-" if v is None else f"{v:.1f}x" for v in vs))
    console.print(table)
    for row in targets:
        mark = {True: "[green]met[/green]", False: "[red]missed[/red]", None: "[yellow]not measured[/yellow]"}
        value = "-" if row["measured"] is None else f"{row['measured']:.2f}"
        console.print(f"{mark[row['met']]}  {row['target']}: {row['measured_as']} = {value} ({row['bound']})")
    for name, why in skipped.items():
        console.print(f"[yellow]not benchmarked[/yellow] {name}: {why}")


def machine() -> dict:
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}


def cache_bytecode(cache: Path) -> None:
    """Let every tool's Python cache its bytecode, as on a user's machine, in `cache` rather than the repo.

    An environment with PYTHONDONTWRITEBYTECODE would recompile every module on every run, which
    costs the tool whose sources have no installed .pyc files (provision, run from its checkout) most.
    """
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(cache / "pycache")


def benchmark(repeat: int, cache: Path, json_path: Path | None, counts: tuple[int, ...] = HOST_COUNTS) -> int:
    cache_bytecode(cache)
    every_host = bench_hosts(max(counts))
    started = time.monotonic()
    lab, addresses = lab_hosts(every_host)
    print(f"{len(every_host)} lab hosts up in {time.monotonic() - started:.0f} s", flush=True)
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="provision-bench-") as tmp:
        work = Path(tmp)
        known_hosts = known_hosts_for(lab, addresses)
        known_hosts_file = work / "known_hosts"
        known_hosts_file.write_text(known_hosts)
        inventory, roles = provision_files(work, lab, addresses, known_hosts)
        tools = [provision_tool(inventory, roles)]
        print(f"converging {len(every_host)} hosts with provision ...", flush=True)
        converge(tools[0], every_host)
        for name, package, exe, make in (("ansible", "ansible-core", "ansible-playbook", ansible_tool),
                                         ("pyinfra", "pyinfra", "pyinfra", pyinfra_tool)):
            try:
                print(f"converging {len(every_host)} hosts with {name} ...", flush=True)
                if name == "ansible":
                    ensure_python(lab, every_host)
                tool = make(ensure_venv(cache, name, package, exe), work, lab, addresses, known_hosts_file)
                converge(tool, every_host)
                tools.append(tool)
            except BenchError as exc:
                skipped[name] = str(exc)
                print(f"{name} is left out: {exc}", file=sys.stderr)
        tools.append(ssh_tool(lab, addresses, known_hosts_file))
        samples: dict[str, dict[int, list[float]]] = {t.name: {n: [] for n in counts} for t in tools}
        load = {"before": os.getloadavg()}
        for hosts in (every_host[:n] for n in counts):
            for i in range(repeat):  # interleaved, so drift on the machine touches every tool alike
                for tool in tools:
                    samples[tool.name][len(hosts)].append(measure(tool, hosts))
                print(f"{len(hosts)} host(s), round {i + 1}/{repeat}: " + ", ".join(
                    f"{t.name} {samples[t.name][len(hosts)][-1]:.2f}s" for t in tools), flush=True)
        load["after"] = os.getloadavg()
    print(f"load average (1, 5, 15 min) before the timed runs {load['before']}, after {load['after']}")
    medians = {name: {n: statistics.median(v) for n, v in by_n.items()} for name, by_n in samples.items()}
    found = ratios(medians)
    targets = target_rows(found)
    print_report(medians, found, targets, skipped, repeat)
    if json_path:
        report = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
                  "load_average": load,
                  "command": " ".join(["python", "bench/noop.py", *sys.argv[1:]]), "repeat": repeat,
                  "versions": {t.name: t.version for t in tools},
                  "samples_s": samples, "medians_s": medians, "ratios": found, "targets": targets,
                  "not_benchmarked": skipped}
        json_path.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed no-op runs per tool and host count (default 5)")
    parser.add_argument("--hosts", default=",".join(map(str, HOST_COUNTS)),
                        help="host counts to time, comma-separated, 1 first (default 1,9,50)")
    parser.add_argument("--json", type=Path, help="also write the samples, medians, ratios and targets here")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                        help=f"where the ansible-core and pyinfra venvs live (default {DEFAULT_CACHE})")
    options = parser.parse_args(argv)
    if options.repeat < 1:
        parser.error("--repeat must be at least 1")
    try:
        counts = tuple(int(n) for n in options.hosts.split(","))
    except ValueError:
        parser.error(f"--hosts {options.hosts!r}: host counts, comma-separated")
    if counts[0] != 1 or sorted(set(counts)) != list(counts):
        parser.error("--hosts: increasing host counts starting with 1, e.g. 1,9,50")
    try:
        return benchmark(options.repeat, options.cache, options.json, counts)
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
