"""invoke launch: run an EC2 instance with a host's user-data through the AWS CLI, then verify its host key.

Every call is the AWS CLI's (`aws ec2 run-instances`, `wait instance-running`, `describe-instances`,
`get-console-output`), so the user's own AWS configuration applies (profiles, SSO, environment);
values reach it as separate arguments, never through a shell.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from provision.errors import LaunchError
from provision.hostkeys import console_fingerprints, verify_and_record
from provision.inventory import Host, Inventory

# The host's `ec2` variable: what each key means (README, "Launching").
EC2_KEYS = {"ami": "AMI id (ami-...)", "instance_type": "instance type (default: declared_facts.instance_type)",
            "key_name": "EC2 key pair name", "subnet_id": "subnet (subnet-...)",
            "security_group_ids": "security groups (sg-...)", "volume_size": "root volume GiB",
            "region": "AWS region", "root_device": "the AMI's root device (default /dev/sda1, Ubuntu's)",
            "iam_instance_profile": "instance profile name (for SSM secrets, ECR)", "public_ip": "use the public address (default true)"}
PATTERNS = {"ami": r"ami-[0-9a-f]{8,17}", "instance_type": r"[a-z][a-z0-9-]*\.[a-z0-9]+", "key_name": r"[\x20-\x7e]{1,255}",
            "subnet_id": r"subnet-[0-9a-f]{8,17}", "security_group_ids": r"sg-[0-9a-f]{8,17}",
            "region": r"[a-z]{2}(-[a-z]+)+-\d", "root_device": r"/dev/[a-z0-9]+", "iam_instance_profile": r"[\w+=,.@-]{1,128}"}


@dataclass
class LaunchSpec:
    """What run-instances is given, from the host's `ec2` variable and declared facts."""

    host: str
    ami: str
    instance_type: str
    key_name: str
    region: str
    subnet_id: str = ""
    security_group_ids: list[str] = field(default_factory=list)
    volume_size: int = 0
    root_device: str = "/dev/sda1"
    iam_instance_profile: str = ""
    public_ip: bool = True

    def run_instances_argv(self, user_data_file: str) -> list[str]:
        argv = ["ec2", "run-instances", "--image-id", self.ami, "--instance-type", self.instance_type,
                "--key-name", self.key_name, "--count", "1", "--user-data", f"fileb://{user_data_file}",
                "--tag-specifications", json.dumps([{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": self.host}]}])]
        if self.subnet_id:
            argv += ["--subnet-id", self.subnet_id]
        if self.security_group_ids:
            argv += ["--security-group-ids", *self.security_group_ids]
        if self.volume_size:
            argv += ["--block-device-mappings", json.dumps([{"DeviceName": self.root_device, "Ebs": {
                "VolumeSize": self.volume_size, "VolumeType": "gp3", "DeleteOnTermination": True}}])]
        if self.iam_instance_profile:
            argv += ["--iam-instance-profile", f"Name={self.iam_instance_profile}"]
        return argv


def launch_spec(host: Host) -> LaunchSpec:
    """The host's launch settings, refused (LaunchError naming host, key and value) before any AWS call."""
    settings = host.vars.get("ec2")
    where = f"host {host.name}: ec2"
    if not isinstance(settings, dict):
        raise LaunchError(f"host {host.name}: launch needs an ec2 variable with ami, key_name and region "
                          f"(keys: {', '.join(EC2_KEYS)})")
    unknown = sorted(set(settings) - set(EC2_KEYS))
    if unknown:
        raise LaunchError(f"{where}: unknown key {unknown[0]!r} (keys: {', '.join(EC2_KEYS)})")
    values: dict[str, Any] = dict(settings)
    values.setdefault("instance_type", (host.vars.get("declared_facts") or {}).get("instance_type", ""))
    for key in ("ami", "instance_type", "key_name", "region"):
        if not values.get(key):
            raise LaunchError(f"{where}.{key} is missing ({EC2_KEYS[key]})")
    groups = values.get("security_group_ids") or []
    values["security_group_ids"] = [groups] if isinstance(groups, str) else groups
    for key, pattern in PATTERNS.items():
        for value in (values.get(key) if isinstance(values.get(key), list) else [values.get(key)]):
            if value not in (None, "") and not (isinstance(value, str) and re.fullmatch(pattern, value)):
                raise LaunchError(f"{where}.{key} {value!r} is not a valid {EC2_KEYS[key]}")
    size = values.get("volume_size", 0)
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= 65536:
        raise LaunchError(f"{where}.volume_size {size!r} must be a whole number of GiB (up to 65536)")
    if not isinstance(values.get("public_ip", True), bool):
        raise LaunchError(f"{where}.public_ip must be true or false")
    return LaunchSpec(host.name, **values)


class AwsCli:
    """The AWS CLI (`aws`) for one region, with JSON output; a failure is a LaunchError with its stderr."""

    def __init__(self, region: str, executable: str = "aws"):
        self.region = region
        self.executable = shutil.which(executable) or ""
        if not self.executable:
            raise LaunchError("the AWS CLI (aws) is not installed on this machine: see "
                              "https://docs.aws.amazon.com/cli/latest/userguide/getting-started-install.html")

    def __call__(self, *argv: str, timeout: float = 120, parse: bool = True) -> Any:
        command = [self.executable, "--region", self.region, "--output", "json", *argv]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise LaunchError(f"aws {' '.join(argv[:2])}: no answer within {timeout:g}s") from None
        if done.returncode != 0:
            tail = " | ".join(done.stderr.strip().splitlines()[-3:])
            raise LaunchError(f"aws {' '.join(argv[:2])} failed (exit {done.returncode}): {tail}")
        return json.loads(done.stdout) if parse and done.stdout.strip() else done.stdout


@dataclass
class Launched:
    instance_id: str
    address: str
    keys: list[tuple[str, str]] = field(default_factory=list)


def run_instance(spec: LaunchSpec, user_data: bytes, aws: AwsCli) -> str:
    """run-instances with the user-data (from a 0600 temporary file); the new instance's id."""
    with tempfile.TemporaryDirectory(prefix="provision-launch-") as directory:
        path = Path(directory) / "user-data"
        path.write_bytes(user_data)
        os.chmod(path, 0o600)
        answer = aws(*spec.run_instances_argv(str(path)))
    return answer["Instances"][0]["InstanceId"]


def wait_running(instance_id: str, spec: LaunchSpec, aws: AwsCli, timeout: float = 900, interval: float = 15) -> str:
    """Poll describe-instances until the instance runs (refused once it is ending); its address."""
    deadline = time.monotonic() + timeout
    while True:
        instance = aws("ec2", "describe-instances", "--instance-ids", instance_id)["Reservations"][0]["Instances"][0]
        state = instance["State"]["Name"]
        if state == "running":
            break
        if state in ("shutting-down", "terminated", "stopping", "stopped"):
            reason = (instance.get("StateReason") or {}).get("Message", "no reason given")
            raise LaunchError(f"{spec.host}: instance {instance_id} is {state}: {reason}")
        if time.monotonic() >= deadline:
            raise LaunchError(f"{spec.host}: instance {instance_id} still {state} after {timeout:g}s")
        time.sleep(interval)
    address = instance.get("PublicIpAddress") if spec.public_ip else instance.get("PrivateIpAddress")
    if not address:
        raise LaunchError(f"{spec.host}: instance {instance_id} runs but has no "
                          f"{'public' if spec.public_ip else 'private'} address (set ec2.public_ip, or the subnet's auto-assign)")
    return address


def console_output(instance_id: str, aws: AwsCli) -> str:
    """The instance's console output so far ('' before EC2 has any; the CLI decodes its base64)."""
    return aws("ec2", "get-console-output", "--instance-id", instance_id).get("Output") or ""


def wait_for_fingerprints(instance_id: str, aws: AwsCli, timeout: float, interval: float = 15) -> str:
    """Poll the console until cloud-init's fingerprint block is there; the console text."""
    deadline = time.monotonic() + timeout
    while True:
        console = console_output(instance_id, aws)
        if console_fingerprints(console):
            return console
        if time.monotonic() >= deadline:
            raise LaunchError(f"instance {instance_id}: no SSH host key fingerprints in its console output after "
                              f"{timeout:g}s; its host key is NOT recorded. Compare by hand later with "
                              f"`aws ec2 get-console-output --instance-id {instance_id}`")
        time.sleep(interval)


def wait_for_ssh(address: str, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((address, port), timeout=5) as sock:
                if sock.recv(4).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        if time.monotonic() >= deadline:
            raise LaunchError(f"{address}:{port}: SSH does not answer after {timeout:g}s")
        time.sleep(3)


def launch(host: Host, inventory: Inventory, user_data: bytes, aws: AwsCli, say: Callable[[str], None],
           console_timeout: float = 900, poll: float = 15) -> Launched:
    """Run the instance, wait for it, and record its host key once it matches the console's fingerprints."""
    spec = launch_spec(host)
    instance_id = run_instance(spec, user_data, aws)
    say(f"{host.name}: launched {instance_id} ({spec.instance_type}, {spec.ami}); waiting for it to run")
    address = wait_running(instance_id, spec, aws, console_timeout, poll)
    say(f"{host.name}: {instance_id} is running at {address}; waiting for cloud-init's host key fingerprints")
    console = wait_for_fingerprints(instance_id, aws, console_timeout, poll)
    wait_for_ssh(address, host.port or 22, console_timeout)
    keys = verify_and_record(f"{host.name} ({address})", address, console, inventory.known_hosts, host.port or 22)
    say(f"{host.name}: host key{'s' if len(keys) > 1 else ''} {', '.join(t for t, _ in keys)} match the console; "
        f"recorded in {inventory.known_hosts}")
    return Launched(instance_id, address, keys)


def launch_and_follow(inventory_path: Path, name: str, roles: str | None, extra: dict[str, Any], embed_secrets: bool,
                      say: Callable[[str], None], timeout: float = 3600, console_timeout: float = 900,
                      poll: float = 15) -> tuple[Launched, "UserDataStatus"]:
    """invoke launch: everything is checked (settings, user-data, the CLI) before the first AWS call."""
    from provision import cli
    from provision.inventory import load_inventory
    from provision.userdata_status import follow_status

    inventory = load_inventory(inventory_path)
    host = inventory.host(name)
    spec = launch_spec(host)
    data = cli.userdata(inventory_path, name, roles, extra, "mime", embed_secrets)
    launched = launch(host, inventory, data.body, AwsCli(spec.region), say, console_timeout, poll)
    if host.address != launched.address:
        say(f"{name}: set ansible_host: {launched.address} for {name} in the inventory (for provision and userdata-status)")
    reached = Host(host.name, {**host.vars, "ansible_host": launched.address}, host.groups)
    return launched, follow_status(reached, inventory, say, timeout)
