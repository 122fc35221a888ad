"""A service whose earlier starts failed is started once its cause is fixed, despite systemd's start limit."""
from __future__ import annotations

import pytest

from tests.helpers import roles_with
from tests.test_engine_lab import inventory_for, provision

pytestmark = pytest.mark.lab

# A unit that fails while /etc/prov-flaky.broken exists, restarted by systemd as docker.service is
# (Restart=always, StartLimitBurst=3 in 60 s, docker's own unit file), so a few failed starts in a
# row leave it refused: "Start request repeated too quickly" (systemd.unit(5), StartLimitBurst=).
FLAKY_UNIT = """[Unit]
Description=fails while /etc/prov-flaky.broken exists
StartLimitBurst=3
StartLimitIntervalSec=60s

[Service]
ExecStart=/bin/sh -c 'if [ -e /etc/prov-flaky.broken ]; then exit 1; fi; exec sleep infinity'
Restart=always
RestartSec=100ms
"""

ROLE = {"flaky": {"tasks.yml": """
- name: The flaky service restarted, as a handler restarts docker
  service:
    name: prov-flaky
    state: restarted
"""}}


def hit_start_limit(lab, host: str) -> None:
    lab.exec(host, "cat > /etc/systemd/system/prov-flaky.service && systemctl daemon-reload", input=FLAKY_UNIT.encode())
    lab.exec(host, "touch /etc/prov-flaky.broken; systemctl start prov-flaky || true")
    waited = lab.exec(host, "for i in $(seq 100); do journalctl -u prov-flaky | grep -q 'repeated too quickly' && break; "
                            "sleep 0.2; done; systemctl status --no-pager prov-flaky", check=False).stdout
    assert "Start request repeated too quickly" in waited, waited
    refused = lab.exec(host, "rm /etc/prov-flaky.broken; systemctl restart prov-flaky", check=False)
    assert refused.returncode != 0, "systemd itself refuses the unit now: the case the role must get past"


def test_a_restart_after_the_start_limit_was_hit_succeeds_once_the_cause_is_gone(lab, tmp_path):
    lab.up(["limit1"], systemd=True)
    lab.exec("limit1", "systemctl is-system-running --wait || true")
    hit_start_limit(lab, "limit1")
    inventory = inventory_for(tmp_path, lab, {"limit1": "root"})
    results = provision(inventory, roles="flaky", roles_dir=roles_with(tmp_path, ROLE))
    assert results["limit1"].status == "changed", results["limit1"].error
    assert lab.exec("limit1", "systemctl is-active prov-flaky").stdout.strip() == "active"
