"""Build, push and SIF on a real lab builder: Debian's docker engine, the lab registry, Apptainer's stand-in."""
from __future__ import annotations

import base64
import io
import json
import urllib.request

import pytest
from rich.console import Console

from provision import cli
from provision.pipeline.build import build
from provision.pipeline.recipes import load_recipe
from provision.pipeline.registry import push
from provision.pipeline.remote import Remote
from provision.pipeline.sif import build_sif
from provision.runner import RunOptions
from tests.helpers import PROJECT, write
from tests.labstack import Stack

pytestmark = pytest.mark.lab
BUILDER = "pipebuild1"
NGC = "nvapi-unused-in-this-test"
REGISTRY_PASSWORD = "lab-registry-pw-93b1"
PROXY = "-o Acquire::http::Proxy=http://10.200.0.1:3142 -o Acquire::http::Proxy::10.200.0.1=DIRECT"


@pytest.fixture(scope="module")
def builder(lab, tmp_path_factory):
    patch = pytest.MonkeyPatch()
    patch.setenv("NGC_API_KEY", NGC)
    patch.setenv("LAB_REGISTRY_PASSWORD", REGISTRY_PASSWORD)
    stack = Stack(lab, NGC)
    registry = lab.registry({"$oauthtoken": NGC, "builder": REGISTRY_PASSWORD})
    lab.up([BUILDER], systemd=True)
    directory = stack.inventory(tmp_path_factory.mktemp("pipeline") / "hosts", {BUILDER: {
        "registry_logins": {registry: {"username": "builder", "password": {"secret_env": "LAB_REGISTRY_PASSWORD"}}}}})
    provisioned = cli.provision(directory, BUILDER, None, "base,docker_ce,apptainer", RunOptions(), None,
                                Console(file=io.StringIO()), PROJECT / "roles")[BUILDER]
    assert provisioned.status == "changed", provisioned.error
    # The lab's base image: no public registry is reachable, so the lab makes one (busybox) and pushes it.
    lab.exec(BUILDER, f"apt-get {PROXY} install -y -qq busybox-static > /dev/null && mkdir -p /tmp/base/bin "
             "&& cp /bin/busybox /tmp/base/bin/ && chroot /tmp/base /bin/busybox --install -s /bin "
             f"&& tar -C /tmp/base -c . | docker import - {registry}/lab/base:1 > /dev/null "
             f"&& printf '%s' {REGISTRY_PASSWORD!r} | docker login {registry} -u builder --password-stdin > /dev/null "
             f"&& docker push {registry}/lab/base:1 > /dev/null && docker rmi {registry}/lab/base:1 > /dev/null "
             "&& docker logout " + registry + " > /dev/null")
    images = tmp_path_factory.mktemp("images")
    write(images / "labapp" / "recipe.yml", f"""
        name: labapp
        tag: "1"
        base: {registry}/lab/base:1
        gpu_architectures: [volta]
        files: {{hello.sh: /usr/local/bin/hello}}
        start: hello
    """)
    write(images / "labapp" / "hello.sh", "#!/bin/sh\necho hello from labapp\n")
    write(images / "labapp" / "Dockerfile.j2", """
        FROM {{ base }}
        {% for src, dest in files.items() %}
        COPY {{ src }} {{ dest }}
        {% endfor %}
        RUN chmod 755 /usr/local/bin/hello
        CMD ["sh", "-c", {{ start | tojson }}]
    """)
    yield {"inventory": directory, "images": images, "registry": registry}
    stack.stop()
    patch.undo()


def test_build_uploads_only_what_changed_and_builds_with_docker(lab, builder):
    recipe = load_recipe("labapp", builder["images"])
    lines: list[str] = []
    with Remote(builder["inventory"], BUILDER) as remote:
        first = build(recipe, remote, lines.append)
        again = build(recipe, remote)
    assert sorted(first.uploaded) == ["Dockerfile", "hello.sh"]
    assert again.uploaded == [] and again.removed == []
    assert any("Successfully tagged labapp:1" in line or "naming to docker.io/library/labapp:1" in line for line in lines)
    assert lab.exec(BUILDER, "docker run --rm labapp:1").stdout.strip() == "hello from labapp"


def test_push_logs_in_with_the_password_on_stdin_and_the_registry_has_the_image(lab, builder):
    recipe = load_recipe("labapp", builder["images"])
    lines: list[str] = []
    with Remote(builder["inventory"], BUILDER) as remote:
        build(recipe, remote)
        target = push(recipe, remote, builder["registry"], lines.append)
    assert target == [f"{builder['registry']}/labapp:1"]
    request = urllib.request.Request(f"http://{builder['registry']}/v2/labapp/tags/list")
    request.add_header("Authorization", "Basic " + base64.b64encode(f"builder:{REGISTRY_PASSWORD}".encode()).decode())
    assert json.load(urllib.request.urlopen(request, timeout=10))["tags"] == ["1"]
    assert not any(REGISTRY_PASSWORD in line for line in lines)


def test_sif_is_a_genuine_sif_that_runs_the_image(lab, builder):
    recipe = load_recipe("labapp", builder["images"])
    with Remote(builder["inventory"], BUILDER) as remote:
        build(recipe, remote)
        path = build_sif(recipe, remote)
    assert path == "/home/ubuntu/provision-build/labapp.sif"
    listing = lab.exec(BUILDER, f"siftool list {path}").stdout
    assert "Squashfs" in listing
    assert lab.exec(BUILDER, f"su ubuntu -c 'apptainer exec {path} hello'").stdout.strip() == "hello from labapp"


def test_pipeline_builds_pushes_makes_the_sif_and_ships_it_through_the_bastion(lab, builder, tmp_path):
    from provision.pipeline.chain import PipelineError, run_pipeline
    from tests.helpers import write as write_file

    lab.up(["pipegw1", "pipehpc1"])
    gateway = lab.host("pipegw1").address
    lab.exec("pipehpc1", "mkdir -p /home/ubuntu/containers /home/ubuntu/tiny && chown ubuntu: /home/ubuntu/containers /home/ubuntu/tiny "
             "&& mount -t tmpfs -o size=64k tmpfs /home/ubuntu/tiny && chmod 777 /home/ubuntu/tiny")
    inventory = builder["inventory"]
    text = (inventory / "inventory.yml").read_text()
    data = json.loads(text)
    data["all"]["hosts"]["pipegw1"] = {"ansible_host": gateway, "ansible_user": "root"}
    data["all"]["hosts"]["pipehpc1"] = {"ansible_host": lab.host("pipehpc1").address, "ansible_user": "ubuntu",
                                        "gateway": "pipegw1", "sif_dir": "/home/ubuntu/containers"}
    write_file(tmp_path / "hosts" / "inventory.yml", json.dumps(data))
    keys = [l for l in lab.known_hosts_path.read_text().splitlines()
            if l.split()[0] in {gateway, lab.host("pipehpc1").address}]
    (tmp_path / "hosts" / "known_hosts").write_text((inventory / "known_hosts").read_text() + "\n".join(keys) + "\n")
    lab.exec("pipehpc1", f"command -v iptables > /dev/null || true")
    import subprocess
    subprocess.run(["ip", "netns", "exec", lab.host("pipehpc1").netns, "iptables", "-A", "INPUT", "-p", "tcp",
                    "--dport", "22", "!", "-s", gateway, "-j", "DROP"], check=True)

    result = run_pipeline("labapp", BUILDER, "pipehpc1", tmp_path / "hosts", builder["registry"], builder["images"],
                          lambda line: None, Console(file=io.StringIO()))
    assert result.stages == ["build", "push", "sif", "ship"]
    there = lab.exec("pipehpc1", "sha256sum /home/ubuntu/containers/labapp.sif").stdout.split()[0]
    here = lab.exec(BUILDER, "sha256sum /home/ubuntu/provision-build/labapp.sif").stdout.split()[0]
    assert there == here

    data["all"]["hosts"]["pipehpc1"]["sif_dir"] = "/home/ubuntu/tiny"
    write_file(tmp_path / "hosts" / "inventory.yml", json.dumps(data))
    with pytest.raises(PipelineError) as failed:
        run_pipeline("labapp", BUILDER, "pipehpc1", tmp_path / "hosts", None, builder["images"], lambda line: None,
                     Console(file=io.StringIO()))
    message = str(failed.value)
    assert "ship failed (done: build, sif)" in message and "free" in message
    assert "next: then: invoke ship pipebuild1:/home/ubuntu/provision-build/labapp.sif pipehpc1" in message


def test_push_finds_the_login_by_registry_host_for_a_namespaced_registry_and_pushes_every_tag(lab, builder):
    recipe = load_recipe("labapp", builder["images"])
    lab.exec(BUILDER, f"su ubuntu -c 'docker logout {builder['registry']}' > /dev/null", check=False)
    with Remote(builder["inventory"], BUILDER) as remote:
        build(recipe, remote)
        targets = push(recipe, remote, f"{builder['registry']}/team", extra_tags=["latest"])
    assert targets == [f"{builder['registry']}/team/labapp:1", f"{builder['registry']}/team/labapp:latest"]
    request = urllib.request.Request(f"http://{builder['registry']}/v2/team/labapp/tags/list")
    request.add_header("Authorization", "Basic " + base64.b64encode(f"builder:{REGISTRY_PASSWORD}".encode()).decode())
    assert sorted(json.load(urllib.request.urlopen(request, timeout=10))["tags"]) == ["1", "latest"]


def test_a_build_dir_under_opt_is_made_for_the_connecting_user_and_holds_context_and_sif(lab, builder, tmp_path):
    from provision.ship import ship

    data = json.loads((builder["inventory"] / "inventory.yml").read_text())
    data["all"]["hosts"][BUILDER]["build_dir"] = "/opt/voltaBuild"
    hosts = tmp_path / "hosts"
    write(hosts / "inventory.yml", json.dumps(data))
    (hosts / "known_hosts").write_text((builder["inventory"] / "known_hosts").read_text())
    lab.exec(BUILDER, "rm -rf /opt/voltaBuild /home/ubuntu/shipped")
    recipe = load_recipe("labapp", builder["images"])
    with Remote(hosts, BUILDER) as remote:
        assert sorted(build(recipe, remote).uploaded) == ["Dockerfile", "hello.sh"], "a new build_dir starts empty"
        path = build_sif(recipe, remote)
    assert path == "/opt/voltaBuild/labapp.sif"
    assert lab.exec(BUILDER, "stat -c '%U %G' /opt/voltaBuild /opt/voltaBuild/labapp /opt/voltaBuild/labapp.sif"
                    ).stdout.split("\n")[:3] == ["ubuntu ubuntu"] * 3
    shipped = ship(f"{BUILDER}:labapp.sif", BUILDER, hosts, "/home/ubuntu/shipped", console=Console(file=io.StringIO()))
    assert shipped.path == "/home/ubuntu/shipped/labapp.sif"
    assert lab.exec(BUILDER, "cmp /opt/voltaBuild/labapp.sif /home/ubuntu/shipped/labapp.sif").returncode == 0
