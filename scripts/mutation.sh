#!/usr/bin/env bash
# The mutation check (slow; not in CI): mutmut on the core Python modules against the unit tests,
# then one-line breaks in the shell prelude and the awk JSON merger (scripts/mutate_shell.py).
# Prints every surviving mutant and a survival rate per module.
#   scripts/mutation.sh                      # every core module (hours on 2 cores)
#   scripts/mutation.sh secrets ops.base     # only these modules (provision.NAME)
#   MUTATION_TESTS="tests/test_userdata.py" scripts/mutation.sh userdata   # against these test files only
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv-mutation
if [ ! -x "$venv/bin/mutmut" ]; then
  python3 -m venv --system-site-packages "$venv"
  "$venv/bin/pip" install -q "mutmut==3.3.1"   # the version pinned in pyproject's `mutation` extra
fi
# mutmut 3.3.1's wheel ships its own test suite as a top-level package `tests`, which would shadow ours.
rm -rf "$venv"/lib/python3*/site-packages/tests
# Python processes the tests start (with their own PYTHONPATH) load scripts/mutmut_child.py through a .pth.
site=$(echo "$venv"/lib/python3*/site-packages)
cp scripts/mutmut_child.py "$site/provision_mutmut_child.py"
echo "import provision_mutmut_child" > "$site/provision_mutmut_child.pth"
unset PYTHONPATH   # mutmut imports the mutated copy in mutants/, never this checkout
patterns=()
for module in "$@"; do patterns+=("provision.$module.*"); done
# mutmut 3.3.1 reuses its test-to-function map between runs and never maps again a test it has timed
# once, even after a run with other MUTATION_TESTS dropped it from the map: that test would then run
# against no mutant. A fresh map for every run (the stats pass is one run of the chosen tests).
rm -f mutants/mutmut-stats.json
"$venv/bin/python" scripts/mutmut_run.py run --max-children "${MUTATION_JOBS:-2}" "${patterns[@]}" > mutants-run.log 2>&1 || true
"$venv/bin/python" scripts/mutation_report.py "${patterns[@]}"
if [ $# -eq 0 ]; then
  python3 scripts/mutate_shell.py
fi
