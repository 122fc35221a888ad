"""The aws_cli role on a real lab host, with AWS's installer zip played by the lab's stand-in."""
from __future__ import annotations

import pytest

from tests.standins.awscli import STANDIN_VERSION, build_awscli_zip
from tests.standins.serve import StandinServer
from tests.test_engine_lab import inventory_for, provision

pytestmark = pytest.mark.lab


def test_the_aws_cli_is_installed_with_the_installers_layout_once(lab, tmp_path):
    lab.up(["awscli1"])
    www = tmp_path / "www"
    build_awscli_zip(www)
    with StandinServer(www, "10.200.0.1", 0) as server:
        inventory = inventory_for(tmp_path, lab, {"awscli1": "ubuntu"}, base_apt_proxy_direct="[10.200.0.1]",
                                  aws_cli_enabled="true", aws_cli_download_url=server.url)
        first = provision(inventory, roles="aws_cli")["awscli1"]
        assert first.status == "changed", first.error
        assert "GET /awscli-exe-linux-x86_64.zip 200" in server.requests
        links = lab.exec("awscli1", "readlink /usr/local/bin/aws /usr/local/aws-cli/v2/current").stdout.split()
        assert links == ["/usr/local/aws-cli/v2/current/bin/aws", f"/usr/local/aws-cli/v2/{STANDIN_VERSION}"]
        assert lab.exec("awscli1", "su ubuntu -c 'aws --version'").stdout.startswith(f"aws-cli/{STANDIN_VERSION} ")
        second = provision(inventory, roles="aws_cli")["awscli1"]
        assert (second.status, second.changed) == ("ok", 0)
        assert server.requests.count("GET /awscli-exe-linux-x86_64.zip 200") == 1
