"""The aws_cli role: AWS's installer zip for the host's architecture, only where the host needs the CLI."""
from __future__ import annotations

from provision.compiler import plan_host, render_script
from provision.facts import EXAMPLE_FACTS
from provision.inventory import Host
from provision.roles import load_roles
from tests.helpers import PROJECT

ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


def plan(facts=EXAMPLE_FACTS, **variables):
    return plan_host(load_roles(PROJECT / "roles", ["aws_cli"]), Host("h", variables, []), {}, facts)


def installer_step(the_plan):
    return next(p.step for p in the_plan.steps if p.task.name == "Install the AWS CLI v2 with AWS's installer for Linux")


def test_an_ecr_login_brings_the_cli_and_its_installer_is_the_zip_for_the_hosts_architecture():
    step = installer_step(plan(registry_logins={ECR: {"username": "AWS", "password": "x"}}))
    assert "apt-helper download-file https://awscli.amazonaws.com/awscli-exe-linux-x86_64.zip" in step.apply
    assert '"$work/aws/install" --install-dir /usr/local/aws-cli --bin-dir /usr/local/bin --update' in step.apply
    arm = installer_step(plan({**EXAMPLE_FACTS, "arch": "arm64"}, aws_cli_enabled=True, aws_cli_version="2.22.35"))
    assert "awscli-exe-linux-aarch64-2.22.35.zip" in arm.apply
    assert "grep -q '^aws-cli/2.22.35'" in arm.check


def test_without_ecr_or_an_explicit_wish_nothing_is_installed():
    steps = plan(registry_logins={"docker.io": {"username": "u", "password": "p"}}).steps
    rendered = render_script(plan(registry_logins={"docker.io": {"username": "u", "password": "p"}}))
    assert "awscli-exe" not in rendered
    assert all("aws" not in p.step.apply for p in steps)
