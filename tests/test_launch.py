"""invoke launch: its settings checked before any call, and its AWS CLI calls made against moto's EC2 emulator.

A real EC2 run was not possible here (no AWS account, no network): moto's server mode answers the
same API the AWS CLI calls. moto and the AWS CLI are installed for this test only, in a venv
cached under ~/.cache/provision-tests (the first run takes a few minutes).
"""
from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from provision.errors import LaunchError
from provision.inventory import Host, load_inventory
from provision.launch import AwsCli, launch_and_follow, launch_spec
from tests.helpers import write

VENV = Path.home() / ".cache" / "provision-tests" / "aws-emulator-venv"
REQUIREMENTS = ["moto[ec2]>=5.1,<6", "flask", "flask-cors", "awscli>=1.29"]  # awscli 1.29+ reads AWS_ENDPOINT_URL
REGION = "us-east-1"


def host(**ec2) -> Host:
    return Host("p3-builder", {"ec2": ec2, "declared_facts": {"instance_type": "p3.2xlarge"}}, [])


def test_launch_settings_come_from_the_ec2_variable_and_declared_facts():
    spec = launch_spec(host(ami="ami-0abcdef1234567890", key_name="me", region="eu-west-1", subnet_id="subnet-0123456789abcdef0",
                            security_group_ids="sg-0123456789abcdef0", volume_size=500))
    argv = spec.run_instances_argv("/tmp/ud")
    assert argv[:12] == ["ec2", "run-instances", "--image-id", "ami-0abcdef1234567890", "--instance-type", "p3.2xlarge",
                         "--key-name", "me", "--count", "1", "--user-data", "fileb:///tmp/ud"]
    assert argv[argv.index("--subnet-id") + 1] == "subnet-0123456789abcdef0"
    assert argv[argv.index("--security-group-ids") + 1] == "sg-0123456789abcdef0"
    mapping = json.loads(argv[argv.index("--block-device-mappings") + 1])
    assert mapping == [{"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 500, "VolumeType": "gp3", "DeleteOnTermination": True}}]


@pytest.mark.parametrize("ec2, message", [
    ({"key_name": "me", "region": "us-east-1"}, "host p3-builder: ec2.ami is missing"),
    ({"ami": "ami-0abcdef1234567890", "key_name": "me", "region": "us-east-1", "subnet_id": "subnet-x; reboot"},
     "ec2.subnet_id 'subnet-x; reboot' is not a valid subnet"),
    ({"ami": "ami-0abcdef1234567890", "key_name": "me", "region": "us-east-1", "volume_size": "500G"},
     "ec2.volume_size '500G' must be a whole number"),
    ({"ami": "ami-0abcdef1234567890", "key_name": "me", "region": "us-east-1", "volume": 500}, "unknown key 'volume'"),
    ({"ami": "ami-0abcdef1234567890", "key_name": "me", "region": "Virginia"}, "ec2.region 'Virginia' is not a valid"),
])
def test_bad_launch_settings_are_refused_naming_host_key_and_value(ec2, message):
    with pytest.raises(LaunchError, match=message.replace("(", r"\(").replace(";", ";")):
        launch_spec(host(**ec2))


# -- against moto's EC2 emulator ----------------------------------------------------------------

def emulator_venv() -> Path:
    """A venv with moto's server and the AWS CLI, made once (under a lock: helpers run tests at once)."""
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(VENV.parent / "aws-emulator.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (VENV / "bin" / "aws").exists() or not (VENV / "bin" / "moto_server").exists():
            building = VENV.with_name(VENV.name + ".new")
            shutil.rmtree(building, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(building)], check=True)
            subprocess.run([str(building / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", *REQUIREMENTS],
                           check=True)
            shutil.rmtree(VENV, ignore_errors=True)
            building.rename(VENV)
            # console scripts name the interpreter by path: make them point at the final place
            for script in (VENV / "bin").iterdir():
                if script.is_file() and not script.is_symlink():
                    text = script.read_bytes()
                    if text.startswith(b"#!") and str(building).encode() in text:
                        script.write_bytes(text.replace(str(building).encode(), str(VENV).encode()))
    return VENV


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def ec2_emulator():
    venv = emulator_venv()
    port = free_port()
    server = subprocess.Popen([str(venv / "bin" / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    patch = pytest.MonkeyPatch()
    for key, value in {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "AWS_CONFIG_FILE": "/dev/null",
                       "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
                       "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"}.items():
        patch.setenv(key, value)
    aws = AwsCli(REGION)
    try:
        for _ in range(300):  # moto answers within a few seconds; bounded, on the condition
            try:
                aws("ec2", "describe-regions", timeout=10)
                break
            except LaunchError:
                if server.poll() is not None:
                    raise
        yield aws
    finally:
        server.terminate()
        server.wait(timeout=30)
        patch.undo()


def test_launch_runs_the_instance_with_the_host_settings_and_refuses_a_console_without_fingerprints(ec2_emulator, tmp_path):
    aws = ec2_emulator
    subnet = aws("ec2", "describe-subnets", "--filters", "Name=default-for-az,Values=true")["Subnets"][0]
    group = aws("ec2", "create-security-group", "--group-name", "builders", "--description", "ssh",
                "--vpc-id", subnet["VpcId"])["GroupId"]
    aws("ec2", "create-key-pair", "--key-name", "lab-key")
    ami = "ami-0abcdef1234567890"  # moto accepts any AMI id unless MOTO_ENABLE_AMI_VALIDATION is set
    inventory = tmp_path / "hosts"
    write(inventory / "inventory.yml", json.dumps({"all": {"hosts": {"p3-builder": {
        "ansible_user": "ubuntu", "roles": ["base"],
        "declared_facts": {"os_id": "ubuntu", "os_version_id": "22.04", "os_codename": "jammy", "arch": "amd64",
                           "instance_type": "p3.2xlarge"},
        "ec2": {"ami": ami, "key_name": "lab-key", "region": REGION, "subnet_id": subnet["SubnetId"],
                "security_group_ids": [group], "volume_size": 200}}}}}))
    (inventory / "known_hosts").write_text("203.0.113.99 ssh-ed25519 KEEPME\n")
    said: list[str] = []

    with pytest.raises(LaunchError) as refused:
        launch_and_follow(inventory, "p3-builder", None, {}, False, said.append, console_timeout=0, poll=0)
    assert "no SSH host key fingerprints in its console output" in str(refused.value)
    assert "host key is NOT recorded" in str(refused.value)
    assert (inventory / "known_hosts").read_text() == "203.0.113.99 ssh-ed25519 KEEPME\n"

    instance = aws("ec2", "describe-instances")["Reservations"][-1]["Instances"][0]
    assert said[0] == f"p3-builder: launched {instance['InstanceId']} (p3.2xlarge, {ami}); waiting for it to run"
    assert said[1].startswith(f"p3-builder: {instance['InstanceId']} is running at {instance['PublicIpAddress']}")
    assert (instance["ImageId"], instance["InstanceType"], instance["KeyName"], instance["SubnetId"]) == \
        (ami, "p3.2xlarge", "lab-key", subnet["SubnetId"])
    assert [g["GroupId"] for g in instance["SecurityGroups"]] == [group]
    assert {"Key": "Name", "Value": "p3-builder"} in instance["Tags"]
    volume_id = instance["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
    assert aws("ec2", "describe-volumes", "--volume-ids", volume_id)["Volumes"][0]["Size"] == 200
    sent = aws("ec2", "describe-instance-attribute", "--instance-id", instance["InstanceId"], "--attribute", "userData")
    from provision import cli
    rendered = cli.userdata(inventory, "p3-builder", None, {}, "mime", False).body
    assert base64.b64decode(sent["UserData"]["Value"]) == rendered


def test_launch_refuses_bad_settings_before_any_aws_call(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no aws here at all: a call would fail differently
    inventory = tmp_path / "hosts"
    write(inventory / "inventory.yml", json.dumps({"all": {"hosts": {"b1": {"ec2": {"ami": "ami-1", "region": "us-east-1"}}}}}))
    with pytest.raises(LaunchError, match="host b1: ec2.instance_type is missing"):
        launch_and_follow(inventory, "b1", None, {}, False, print)
    assert load_inventory(inventory).host("b1").vars["ec2"]["ami"] == "ami-1"
