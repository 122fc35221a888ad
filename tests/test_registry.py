"""Registry addresses: the host logins are keyed by, ECR's forms, and the push script's tags and repositories."""
from __future__ import annotations

from pathlib import Path

import pytest

from provision.errors import ProvisionError, RecipeError
from provision.pipeline.recipes import Recipe
from provision.pipeline.registry import (Registry, _login_sh, check_push, find_login, parse_registry, push_script,
                                         registry_of)

ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


@pytest.mark.parametrize("text, host, namespace", [
    ("docker.io/alice", "docker.io", "alice"),
    ("alice", "docker.io", "alice"),
    ("index.docker.io/alice", "docker.io", "alice"),
    ("registry-1.docker.io/alice/", "docker.io", "alice"),
    ("https://docker.io/alice", "docker.io", "alice"),
    (ECR, ECR, ""),
    (f"{ECR}/team", ECR, "team"),
    (f"{ECR}/team/vision", ECR, "team/vision"),
    ("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/team", "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn", "team"),
    ("nvcr.io/myorg", "nvcr.io", "myorg"),
    ("nvcr.io/myorg/myteam", "nvcr.io", "myorg/myteam"),
    ("registry.example.org:5000/ml", "registry.example.org:5000", "ml"),
    ("10.200.0.1:5000", "10.200.0.1:5000", ""),
    ("localhost:5000/x", "localhost:5000", "x"),
])
def test_a_registry_address_splits_into_the_host_logins_are_keyed_by_and_a_namespace(text, host, namespace):
    assert parse_registry(text) == Registry(host, namespace)


@pytest.mark.parametrize("text", ["docker.io", "reg.example.org/Team", "reg.example.org/a b", "reg..example/x",
                                  "reg.example.org:5000/x;rm -rf /", "docker.io/$(id)"])
def test_a_malformed_registry_is_refused_naming_the_value(text):
    with pytest.raises(RecipeError) as refused:
        parse_registry(text)
    assert repr(text) in str(refused.value)


@pytest.mark.parametrize("host, account, region", [
    (ECR, "123456789012", "us-east-1"),
    ("210987654321.dkr.ecr.eu-west-2.amazonaws.com", "210987654321", "eu-west-2"),
    ("210987654321.dkr.ecr-fips.us-gov-west-1.amazonaws.com", "210987654321", "us-gov-west-1"),
    ("210987654321.dkr.ecr.cn-northwest-1.amazonaws.com.cn", "210987654321", "cn-northwest-1"),
])
def test_ecr_hosts_give_their_account_and_region(host, account, region):
    ecr = parse_registry(f"{host}/team").ecr
    assert (ecr["account"], ecr["region"]) == (account, region)


@pytest.mark.parametrize("host", ["12345678901.dkr.ecr.us-east-1.amazonaws.com", "123456789012.dkr.ecr.us-east-1.example.com",
                                  "public.ecr.aws", "123456789012.dkr.ecr.us-east-1.amazonaws.com.evil.org"])
def test_hosts_that_only_resemble_ecr_are_not_ecr(host):
    assert Registry(host).ecr is None


@pytest.mark.parametrize("image, host", [
    ("nvcr.io/nvidia/pytorch:25.06-py3", "nvcr.io"), ("ubuntu:22.04", "docker.io"), ("alice/tool:1", "docker.io"),
    ("index.docker.io/library/ubuntu", "docker.io"), ("10.200.0.1:5000/lab/base:1", "10.200.0.1:5000"),
])
def test_the_registry_of_a_base_image_is_its_host(image, host):
    assert registry_of(image) == host


@pytest.mark.parametrize("key", ["docker.io", "index.docker.io", "https://index.docker.io/v1/", "docker.io/alice",
                                 "registry-1.docker.io"])
def test_a_docker_hub_login_is_found_under_any_of_its_names(key):
    assert find_login({key: {"username": "alice"}, "nvcr.io": {}}, "docker.io", "host b1") == (key, {"username": "alice"})


def test_a_login_keyed_by_host_and_port_is_found_for_a_registry_with_a_path():
    logins = {"reg.example.org:5000": {"username": "u"}, "reg.example.org": {"username": "other"}}
    assert find_login(logins, parse_registry("reg.example.org:5000/team").host, "host b1")[0] == "reg.example.org:5000"


def test_two_logins_for_one_registry_are_refused():
    with pytest.raises(ProvisionError, match="2 entries for docker.io"):
        find_login({"docker.io": {}, "index.docker.io": {}}, "docker.io", "host b1")


def test_ecr_logs_in_with_a_token_from_the_aws_cli_on_stdin():
    script, secrets = _login_sh(ECR, {}, "b1")
    assert script == (f"aws ecr get-login-password --region us-east-1 | "
                      f"docker login --username AWS --password-stdin {ECR} || exit 1")
    assert secrets == []


def test_a_password_login_keeps_the_password_out_of_the_script_text_and_argv(monkeypatch):
    monkeypatch.setenv("HUB_PW", "s3cret-hub")
    script, secrets = _login_sh("docker.io", {"docker.io/alice": {"username": "alice", "password": {"secret_env": "HUB_PW"}}}, "b1")
    assert secrets == ["s3cret-hub"] and "s3cret-hub" not in script
    assert "docker login docker.io --username alice --password-stdin" in script


def test_nvcr_uses_the_literal_oauthtoken_user():
    script, _ = _login_sh("nvcr.io", {"nvcr.io/myorg": {"password": "k"}}, "b1")
    assert "--username '$oauthtoken' --password-stdin" in script


def recipe() -> Recipe:
    return Recipe("fastai2", Path("."), {"name": "fastai2", "tag": "25.06"})


def test_an_ecr_push_creates_the_repository_when_missing_then_pushes_every_tag():
    script, targets = push_script(recipe(), parse_registry(f"{ECR}/team"), ["25.06", "latest", "25.06"], "LOGIN")
    assert targets == [f"{ECR}/team/fastai2:25.06", f"{ECR}/team/fastai2:latest"]
    lines = script.splitlines()
    assert lines[0] == "LOGIN"
    assert lines[1].startswith("aws ecr describe-repositories --region us-east-1 --registry-id 123456789012 "
                               "--repository-names team/fastai2 > /dev/null 2>&1 || ")
    assert "aws ecr create-repository --region us-east-1 --registry-id 123456789012 --repository-name team/fastai2" in lines[1]
    assert lines[2:] == [f"docker tag fastai2:25.06 {t} || exit 1" for t in targets] + \
                        [f"docker push {t} 2>&1 || exit 1" for t in targets]


def test_other_registries_get_no_repository_step():
    script, targets = push_script(recipe(), parse_registry("docker.io/alice"), ["25.06"], "")
    assert targets == ["docker.io/alice/fastai2:25.06"] and "aws" not in script


def test_a_bad_tag_is_refused_before_any_connection():
    with pytest.raises(RecipeError, match="'v1;reboot' is not a docker tag"):
        check_push("docker.io/alice", ["v1;reboot"])


# -- build_dir -------------------------------------------------------------------------------

from provision.errors import InventoryError  # noqa: E402
from provision.inventory import Host  # noqa: E402
from provision.pipeline.builddir import build_dir, ensure_sh, shell_path  # noqa: E402


@pytest.mark.parametrize("value, expected", [(None, "~/provision-build"), ("/opt/voltaBuild", "/opt/voltaBuild"),
                                             ("/opt/voltaBuild/", "/opt/voltaBuild"), ("~/build", "~/build")])
def test_build_dir_defaults_to_provision_build_in_home(value, expected):
    assert build_dir(Host("b1", {"build_dir": value} if value else {}, [])) == expected


@pytest.mark.parametrize("value", ["build", "/opt/../etc", "/opt/a\nb", 42])
def test_a_build_dir_that_is_relative_climbs_or_has_control_characters_is_refused(value):
    with pytest.raises(InventoryError, match="host b1: build_dir"):
        build_dir(Host("b1", {"build_dir": value}, []))


def test_the_build_dir_reaches_the_shell_quoted_with_home_expanded():
    assert shell_path("~/my build") == "\"$HOME\"/'my build'"
    assert shell_path("/opt/$(reboot)") == "'/opt/$(reboot)'"
    assert ensure_sh("/opt/voltaBuild").startswith("build_dir=/opt/voltaBuild\n")
    assert 'sudo -n install -d -o "$(id -u)" -g "$(id -g)" "$build_dir"' in ensure_sh("/opt/voltaBuild")
