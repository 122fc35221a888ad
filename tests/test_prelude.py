"""The prelude's package helpers against the real dpkg-query and apt-mark, and the awk JSON merger, under a local sh."""
from __future__ import annotations

import importlib.resources
import json
import shutil
import subprocess

import pytest

from tests.helpers import write

PRELUDE = importlib.resources.files("provision").joinpath("prelude.sh")
AWK = importlib.resources.files("provision").joinpath("json_merge.awk")

# A dpkg status database in dpkg's own format (deb-status(5)); dpkg-query reads it through
# DPKG_ADMINDIR (dpkg-query(1), ENVIRONMENT) and apt-mark through Dir::State::status (apt.conf(5)).
STATUS = {
    "alpha": ("install ok installed", "1.0-1"),
    "alpha-extra": ("install ok installed", "1.0-1"),
    "beta": ("hold ok installed", "2.0-1"),
    "gamma": ("deinstall ok config-files", "3.0-1"),
    "delta": ("install ok half-configured", "4.0-1"),
}


@pytest.fixture
def dpkg(tmp_path):
    """sh -c TEXT with the prelude loaded and dpkg/apt reading a status database made here."""
    if shutil.which("dpkg-query") is None or shutil.which("apt-mark") is None:
        pytest.skip("needs dpkg-query and apt-mark (Debian or Ubuntu)")
    admin = tmp_path / "dpkg"
    (admin / "info").mkdir(parents=True)
    (admin / "updates").mkdir()
    write(admin / "status", "\n".join(
        f"Package: {name}\nStatus: {status}\nMaintainer: t <t@example.org>\nArchitecture: all\n"
        f"Version: {version}\nDescription: test\n" for name, (status, version) in STATUS.items()))
    # apt's own state and cache here too, so that no other apt on this machine can get in the way.
    for folder in ("lists/partial", "cache/archives/partial", "sources.list.d"):
        (tmp_path / "apt" / folder).mkdir(parents=True)
    (tmp_path / "apt" / "sources.list").write_text("")
    write(tmp_path / "apt.conf", f'Dir::State::status "{admin}/status";\n'
                                 f'Dir::State::Lists "{tmp_path}/apt/lists";\n'
                                 f'Dir::State::extended_states "{tmp_path}/apt/extended_states";\n'
                                 f'Dir::Cache "{tmp_path}/apt/cache";\n'
                                 f'Dir::Etc::SourceList "{tmp_path}/apt/sources.list";\n'
                                 f'Dir::Etc::SourceParts "{tmp_path}/apt/sources.list.d";\n')

    def sh(text: str) -> list[str]:
        script = f"PROV_APT_LOCK_TIMEOUT=1\n{PRELUDE.read_text()}\n{text}\n"
        env = {"DPKG_ADMINDIR": str(admin), "APT_CONFIG": str(tmp_path / "apt.conf"), "PATH": "/usr/bin:/bin"}
        done = subprocess.run(["sh", "-c", script], capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stdout.split()
    return sh


def test_missing_packages_are_those_not_fully_installed_or_at_another_version(dpkg):
    assert dpkg("prov_pkg_missing alpha beta gamma delta nope") == ["gamma", "delta", "nope"]
    assert dpkg("prov_pkg_missing alpha=1.0-1 beta=2.0-2 alpha-extra") == ["beta=2.0-2"]


def test_present_packages_include_partly_installed_and_config_files_only(dpkg):
    assert dpkg("prov_pkg_present alpha beta gamma delta nope") == ["alpha", "beta", "gamma", "delta"]


def test_unheld_packages_match_held_names_exactly(dpkg):
    assert dpkg("prov_pkg_unheld alpha beta bet alpha-extra") == ["alpha", "bet", "alpha-extra"]


# -- json_merge.awk, with every awk this machine has -----------------------------------------------

AWKS = [awk for awk in ("mawk", "gawk", "original-awk") if shutil.which(awk)] + \
       (["busybox awk"] if shutil.which("busybox") else [])


# Every want/flag/state a package can be left in; dpkg refuses a triggers state without its field.
DPKG_STATES = [(flag, state) for flag in ("ok", "reinstreq") for state in (
    "installed", "config-files", "not-installed", "half-installed", "unpacked", "half-configured",
    "triggers-awaited", "triggers-pending")]
TRIGGER_FIELDS = {"triggers-awaited": "Triggers-Awaited: other\n", "triggers-pending": "Triggers-Pending: trig\n"}


@pytest.mark.parametrize("flag, state", DPKG_STATES)
def test_a_cut_short_dpkg_is_seen_exactly_when_dpkg_audit_reports_it(tmp_path, flag, state):
    """prov_dpkg_interrupted reads the status file with grep; the real dpkg --audit is the reference."""
    if shutil.which("dpkg") is None:
        pytest.skip("needs dpkg (Debian or Ubuntu)")
    admin = tmp_path / "dpkg"
    (admin / "updates").mkdir(parents=True)
    (admin / "info").mkdir()
    for suffix in ("list", "md5sums"):  # dpkg --audit also reports an installed package without these
        (admin / "info" / f"pkg.{suffix}").write_text("")
    (admin / "available").write_text("")
    (admin / "status").write_text(
        f"Package: pkg\nStatus: install {flag} {state}\nMaintainer: t <t@example.org>\nArchitecture: all\n"
        f"Version: 1.0\n{TRIGGER_FIELDS.get(state, '')}Description: test\n")
    env = {"DPKG_ADMINDIR": str(admin), "PATH": "/usr/bin:/bin"}
    audit = subprocess.run(["dpkg", "--audit"], capture_output=True, text=True, env=env)
    assert audit.returncode in (0, 1) and "error" not in audit.stderr, audit.stderr
    script = f"PROV_APT_LOCK_TIMEOUT=1\n{PRELUDE.read_text()}\nprov_dpkg_interrupted"
    ours = subprocess.run(["sh", "-c", script], capture_output=True, text=True, env=env)
    assert (ours.returncode == 0) == bool(audit.stdout.strip()), (flag, state, audit.stdout)
    if ours.returncode != 0:  # a journal dpkg left in updates/ is a cut-short run whatever the status says
        (admin / "updates" / "0001").write_text("")
        assert subprocess.run(["sh", "-c", script], env=env).returncode == 0


@pytest.fixture(params=AWKS or ["awk"])
def merge(request, tmp_path):
    def run(current: str | None, patch: str) -> tuple[int, str, str]:
        base = tmp_path / "current.json"
        if current is None:
            base.unlink(missing_ok=True)
        else:
            base.write_text(current)
        (tmp_path / "patch.json").write_text(patch)
        done = subprocess.run([*request.param.split(), "-f", str(AWK), str(base), str(tmp_path / "patch.json")],
                              capture_output=True, text=True, timeout=30)
        return done.returncode, done.stdout, done.stderr
    return run


def merged(merge, current: str | None, patch: str):
    code, out, err = merge(current, patch)
    assert code == 0, err
    return json.loads(out, object_pairs_hook=list)


def test_objects_merge_deeply_keeping_unnamed_keys_in_their_order(merge):
    current = '{"b": 1, "runtimes": {"runc": {"path": "runc"}}, "a": [1, 2]}'
    patch = '{"runtimes": {"nvidia": {"path": "nvidia-container-runtime", "args": []}}, "new": "x"}'
    assert merged(merge, current, patch) == [
        ("b", 1),
        ("runtimes", [("runc", [("path", "runc")]), ("nvidia", [("path", "nvidia-container-runtime"), ("args", [])])]),
        ("a", [1, 2]),
        ("new", "x"),
    ]


def test_arrays_and_scalars_from_the_patch_replace_and_keys_stay_single(merge):
    assert merged(merge, '{"a": [1, 2], "b": {"c": 1}, "d": "old"}', '{"a": [3], "b": 5, "d": "new \\"q\\""}') == [
        ("a", [3]), ("b", 5), ("d", 'new "q"')]


def test_a_missing_or_empty_file_counts_as_an_empty_object(merge):
    assert merged(merge, None, '{"k": true}') == [("k", True)]
    assert merged(merge, " \n", '{"k": null}') == [("k", None)]
    assert merged(merge, "{}", "{}") == []


@pytest.mark.parametrize("current, why", [
    ('{"a": "open}', "unterminated string"),
    ('{"a": 1} x', "unexpected text"),
    ('{"a": 1} {}', "trailing text"),
    ("[1, 2]", "top level is not an object"),
    ('{"a" 1}', "':' expected"),
    ('{"a": 1 "b": 2}', "',' or closing bracket expected"),
    ('{"a": }', "value expected"),
    ("{a: 1}", "unexpected text"),
])
def test_invalid_json_is_refused_with_exit_2_naming_the_file(merge, current, why):
    code, out, err = merge(current, '{"k": 1}')
    assert code == 2 and "current.json: invalid JSON" in err and why in err, (code, out, err)
