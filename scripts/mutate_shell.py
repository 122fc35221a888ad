#!/usr/bin/env python3
"""One-line breaks in the shell prelude, the awk JSON merger and the README's promises, each run against the tests.

Each break replaces one exact text (which must occur once) in a copy of the project and runs
the tests that exercise it; a break no test catches is a surviving mutant. mutmut does the same
for the Python modules (scripts/mutation.sh); it cannot read sh or awk.

    python3 scripts/mutate_shell.py                 # every break, unit tests
    python3 scripts/mutate_shell.py --set promises  # the breaks of issue 12's table only
    python3 scripts/mutate_shell.py --lab           # also the breaks only lab tests can catch (root)
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
COPIED = ["provision", "roles", "hosts", "images", "tests", "pyproject.toml"]
UNIT = ["-m", "not lab"]


@dataclass(frozen=True)
class Break:
    """Replace `old` by `new` in `path`; the tests in `tests` (pytest arguments) must then fail."""

    set: str
    what: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...] = ("tests",)
    lab: bool = False


PRELUDE, AWK = "provision/prelude.sh", "provision/json_merge.awk"
# The unit tests that run the prelude and the merger (the promises' breaks run the whole unit suite).
SHELL_TESTS = ("tests/test_prelude.py", "tests/test_local_engine.py", "tests/test_engine_promises.py",
               "tests/test_userdata.py")

BREAKS = [
    # -- issue 12's table: the README's promises ----------------------------------------------
    Break("promises", "the re-check after an apply always passes", PRELUDE,
          'if [ "$2" != norecheck ] && ! ( "s$1_check" )', 'if false && ! ( "s$1_check" )'),
    Break("promises", "notified handlers kept in memory only", PRELUDE,
          'if [ "$PROV_CHECK" = 1 ]; then eval "prov_h_$1=1"; else : > "$PROV_STATE/handlers/$1"; fi',
          'eval "prov_h_$1=1"'),
    Break("promises", "the boot-time fact check skipped", "provision/userdata.py",
          "\n{_fact_check(facts, host)}\n", "\n"),
    Break("promises", "the user-data limit moved up by 8 KB", "provision/userdata.py",
          "EC2_LIMIT = 16384", "EC2_LIMIT = 16384 + 8192"),
    Break("promises", "the user-data limit moved down by 8 KB", "provision/userdata.py",
          "EC2_LIMIT = 16384", "EC2_LIMIT = 16384 - 8192"),
    Break("promises", "the user-data limit enforced for the shell format only", "provision/userdata.py",
          "if len(body) > EC2_LIMIT:", 'if fmt == "shell" and len(body) > EC2_LIMIT:'),
    Break("promises", "--embed-secrets drops the value", "provision/userdata.py",
          "encoded = base64.b64encode(secret.value.encode()).decode()\n            lines",
          "encoded = ''\n            lines"),
    Break("promises", "-e keys the host defines dropped", "provision/compiler.py",
          "merged.update(extra)", "merged.update({k: v for k, v in extra.items() if k not in host.vars})"),
    Break("promises", "only values with spaces or quotes quoted", "provision/ops/base.py",
          "return shlex.quote(str(value))",
          "return shlex.quote(str(value)) if set(str(value)) & set(\" '\\\"\") else str(value)"),
    # -- the prelude -----------------------------------------------------------------------------
    Break("prelude", "a passing check reported as a change", PRELUDE,
          'if [ "$prov_rc" = 0 ]; then prov_say "$1 ok"; return 0; fi', 'if [ "$prov_rc" = 0 ]; then prov_say "$1 ok"; fi', tests=SHELL_TESTS),
    Break("prelude", "exit 77 (not applicable) treated as a needed change", PRELUDE,
          'if [ "$prov_rc" = 77 ]; then prov_say "$1 skipped', 'if [ "$prov_rc" = 78 ]; then prov_say "$1 skipped', tests=SHELL_TESTS),
    Break("prelude", "check mode applies", PRELUDE,
          'if [ "$PROV_CHECK" = 1 ]; then prov_say "$1 would-change"; return 10; fi', ':', tests=SHELL_TESTS),
    Break("prelude", "a failed apply goes unreported", PRELUDE,
          '( "s$1_apply" ) > "$prov_run/out" 2>&1 < /dev/null\n  prov_rc=$?\n  if [ "$prov_rc" != 0 ]; then\n    prov_say "$1 failed $prov_rc"',
          '( "s$1_apply" ) > "$prov_run/out" 2>&1 < /dev/null\n  prov_rc=$?\n  if false; then\n    prov_say "$1 failed $prov_rc"', tests=SHELL_TESTS),
    Break("prelude", "a failed step does not stop the run", PRELUDE,
          'prov_say "$1 failed 0 applied, but its check still fails"; prov_log_tail "$1" "$prov_run/out"; exit 1',
          'prov_say "$1 failed 0 applied, but its check still fails"; prov_log_tail "$1" "$prov_run/out"', tests=SHELL_TESTS),
    Break("prelude", "a failed step's output not sent back", PRELUDE,
          "tail -n 30 \"$2\" | while", "tail -n 0 \"$2\" | while", tests=SHELL_TESTS),
    Break("prelude", "a run handler is not forgotten", PRELUDE,
          '  rm -f "$PROV_STATE/handlers/$2"\n  prov_say "$1 changed"', '  prov_say "$1 changed"', tests=SHELL_TESTS),
    Break("prelude", "a handler runs in check mode", PRELUDE,
          'prov_handler() {  # ID HANDLER: run a notified handler once, then forget it\n  if [ "$PROV_CHECK" = 1 ]; then prov_say "$1 would-change"; return 0; fi',
          'prov_handler() {  # ID HANDLER: run a notified handler once, then forget it', tests=SHELL_TESTS),
    Break("prelude", "check mode notes a handler on disk", PRELUDE,
          'if [ "$PROV_CHECK" = 1 ]; then eval "prov_h_$1=1"; else', 'if false; then eval "prov_h_$1=1"; else', tests=SHELL_TESTS),
    Break("prelude", "a verification failure passes", PRELUDE,
          'prov_say "$1 failed $prov_rc"; prov_log_tail "$1" "$prov_run/out"; exit 1\n}\n\nprov_step()',
          'prov_say "$1 ok"; return 0\n}\n\nprov_step()', tests=SHELL_TESTS),
    Break("prelude", "a version pin ignored when the package is installed", PRELUDE,
          '(want != "" && have[name] != want)', '(want != "" && 0)', tests=SHELL_TESTS),
    Break("prelude", "a package only configured-files left counts as installed", PRELUDE,
          'substr($0, 2, 1) == "i" { have[$2] = $3 }', '{ have[$2] = $3 }', tests=SHELL_TESTS),
    Break("prelude", "a held package matched by substring", PRELUDE,
          'grep -qxF -- "$prov_name" || echo "$prov_name"', 'grep -qF -- "$prov_name" || echo "$prov_name"', tests=SHELL_TESTS),
    Break("prelude", "a partly installed package counts as absent", PRELUDE,
          'i*|h*|t*|"rc"*) echo "$prov_name" ;;', 'i*) echo "$prov_name" ;;', tests=SHELL_TESTS),
    Break("prelude", "a commented-out source counts as live", PRELUDE,
          '&& $0 !~ /^[ \\t]*#/ { found = 1 }', '{ found = 1 }', lab=True, tests=("tests", "-m", "lab", "-k", "builder")),
    Break("prelude", "apt lists never refreshed", PRELUDE,
          '[ "$prov_need" = 1 ] || return 0', 'return 0', lab=True, tests=("tests/test_engine_lab.py", "-m", "lab")),
    Break("prelude", "apt fails at once on a held dpkg lock", PRELUDE,
          'DPkg::Lock::Timeout="$PROV_APT_LOCK_TIMEOUT"', 'DPkg::Lock::Timeout=0', lab=True,
          tests=("tests/test_engine_lab.py", "-m", "lab", "-k", "lock")),
    # -- the awk JSON merger ---------------------------------------------------------------------
    Break("json_merge", "nested objects replaced instead of merged", AWK,
          "if (found) child[a, found] = merge(child[a, found], child[b, i])", "if (found) child[a, found] = child[b, i]", tests=SHELL_TESTS),
    Break("json_merge", "new keys dropped", AWK,
          "else { count[a]++; keyof[a, count[a]] = keyof[b, i]; child[a, count[a]] = child[b, i] }", "else { }", tests=SHELL_TESTS),
    Break("json_merge", "an existing key duplicated instead of replaced", AWK,
          "if (keyof[a, j] == keyof[b, i]) { found = j; break }", "if (0) { found = j; break }", tests=SHELL_TESTS),
    Break("json_merge", "an unterminated string accepted", AWK,
          'fail(file, "unterminated string")', 'RLENGTH = length(s)', tests=SHELL_TESTS),
    Break("json_merge", "an empty file is invalid JSON", AWK,
          'if (text ~ /^[ \\t\\r\\n]*$/) text = "{}"', '', tests=SHELL_TESTS),
    Break("json_merge", "arrays read as objects", AWK,
          'kind[id] = (tok[pos] == "{") ? "o" : "a"', 'kind[id] = "o"', tests=SHELL_TESTS),
    Break("json_merge", "no comma between members", AWK,
          'out = out ((i < count[id]) ? ",\\n" : "\\n")', 'out = out "\\n"', tests=SHELL_TESTS),
    Break("json_merge", "trailing text accepted", AWK,
          'if (pos <= ntok) fail(file, "trailing text " tok[pos])', '', tests=SHELL_TESTS),
    Break("json_merge", "a top-level array accepted", AWK,
          'if (kind[id] != "o") fail(file, "top level is not an object")', '', tests=SHELL_TESTS),
    Break("json_merge", "a missing colon accepted", AWK,
          """if (tok[++pos] != ":") fail(file, "':' expected after " key)""", "++pos", tests=SHELL_TESTS),
]


def copy_project(into: Path) -> None:
    for name in COPIED:
        source = PROJECT / name
        if source.is_dir():
            shutil.copytree(source, into / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, into / name)


def run_break(item: Break, verbose: bool) -> str:
    """'caught', 'SURVIVED' or 'stale' (the text to break is no longer there, exactly once)."""
    with tempfile.TemporaryDirectory(prefix="mutate-") as scratch:
        copy = Path(scratch)
        copy_project(copy)
        target = copy / item.path
        text = target.read_text()
        if text.count(item.old) != 1:
            return "stale"
        target.write_text(text.replace(item.old, item.new))
        selection = list(item.tests) + ([] if "-m" in item.tests else UNIT)
        env = {**os.environ, "PYTHONPATH": str(copy)}
        done = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *selection],
                              cwd=copy, env=env, capture_output=True, text=True)
        if verbose:
            print(done.stdout[-1500:])
        if done.returncode == 1:
            failed = [line for line in done.stdout.splitlines() if line.startswith("FAILED ")]
            return "caught" + (f" by {failed[0].split()[1]}" if failed else "")
        return "SURVIVED" if done.returncode == 0 else f"caught (pytest exit {done.returncode}: an error, not a failure)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=sorted({b.set for b in BREAKS}), help="only this set of breaks")
    parser.add_argument("--lab", action="store_true", help="also the breaks that need lab tests (root, slow)")
    parser.add_argument("-v", "--verbose", action="store_true", help="show pytest's output for each break")
    options = parser.parse_args()
    chosen = [b for b in BREAKS if (options.set in (None, b.set)) and (options.lab or not b.lab)]
    tally: dict[str, list[int]] = {}
    for item in chosen:
        outcome = run_break(item, options.verbose)
        print(f"{item.set:10} {outcome:60} {item.what} ({item.path})", flush=True)
        counts = tally.setdefault(item.set, [0, 0, 0])
        counts[0] += outcome == "SURVIVED"
        counts[1] += outcome == "stale"
        counts[2] += 1
    for name, (survived, stale, total) in tally.items():
        print(f"{name}: {survived} of {total - stale} survived ({100 * survived / max(1, total - stale):.0f}%)"
              + (f"; {stale} stale (the text to break changed: update BREAKS)" if stale else ""))
    return 1 if any(s or t for s, t, _ in tally.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
