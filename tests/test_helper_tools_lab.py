"""helper_tools on a real lab host: the locate database is built once, after plocate is installed."""
from __future__ import annotations

import pytest

from tests.test_engine_lab import inventory_for, provision

pytestmark = pytest.mark.lab
HANDLER = "build the locate database"


def test_locate_finds_files_after_the_first_run_and_a_second_run_does_not_index_again(lab, tmp_path):
    lab.up(["locate1"])
    inventory = inventory_for(tmp_path, lab, {"locate1": "root"})
    first = provision(inventory)["locate1"]
    assert first.status == "changed", first.error
    assert [s.status for s in first.steps if s.task == HANDLER] == ["changed"]
    assert lab.exec("locate1", "locate --regex '^/usr/bin/tmux$'").stdout.split() == ["/usr/bin/tmux"]
    database = lab.exec("locate1", "stat -c %Y.%i /var/lib/plocate/plocate.db").stdout

    second = provision(inventory)["locate1"]
    assert (second.status, second.changed) == ("ok", 0)
    assert [s for s in second.steps if s.task == HANDLER] == []
    assert lab.exec("locate1", "stat -c %Y.%i /var/lib/plocate/plocate.db").stdout == database, "updatedb did not run again"
