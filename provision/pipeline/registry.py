"""invoke push: log the builder in to a registry (password on stdin only), tag and push the image."""
from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Any, Callable

from provision.ansible_names import from_deepops
from provision.errors import ProvisionError, RecipeError
from provision.ops.base import q
from provision.pipeline.recipes import Recipe, arch_of
from provision.pipeline.remote import Remote
from provision.secrets import Secret, resolve_secrets

# Docker Hub answers to these names; docker's CLI treats them as one registry (docker/cli
# registry.IndexHostname "index.docker.io", DefaultNamespace "docker.io"; registry-1 serves the API).
DOCKER_HUB = "docker.io"
DOCKER_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}
# ECR's private registry host: ACCOUNT.dkr.ecr[-fips].REGION.amazonaws.com[.cn] (AWS ECR user guide,
# "Private registry concepts": https://<aws_account_id>.dkr.ecr.<region>.amazonaws.com).
ECR_HOST = re.compile(r"^(?P<account>\d{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z]{2}(?:-[a-z]+)+-\d)\.amazonaws\.com(?:\.cn)?$")
HOST = re.compile(r"^(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*(?::\d{1,5})?$")
# A repository path component as the OCI distribution spec allows it (lowercase).
PATH = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class Registry:
    """Where images go: the registry host (what logins are keyed by) and a namespace under it."""

    host: str
    namespace: str = ""

    @property
    def ecr(self) -> re.Match | None:
        return ECR_HOST.match(self.host)

    def repository(self, name: str) -> str:
        """The repository path in this registry for an image named `name` ('team/fastai2')."""
        return f"{self.namespace}/{name}" if self.namespace else name

    def reference(self, name: str, tag: str) -> str:
        return f"{self.host}/{self.repository(name)}:{tag}"


def parse_registry(text: str) -> Registry:
    """A --registry value as host and namespace: 'docker.io/me', 'me' (Docker Hub), 'HOST:PORT/ns', an ECR host.

    Raises RecipeError naming the value when it is not a registry address.
    """
    value = re.sub(r"^[a-z]+://", "", text.strip()).rstrip("/")
    first, _, rest = value.partition("/")
    if "." in first or ":" in first or first == "localhost":
        host, namespace = first.lower(), rest
    else:
        host, namespace = DOCKER_HUB, value
    if host in DOCKER_HUB_ALIASES:
        host = DOCKER_HUB
    if not HOST.match(host) or (namespace and not PATH.match(namespace)):
        raise RecipeError(f"registry {text!r} is not a registry address "
                          "(docker.io/USER, ACCOUNT.dkr.ecr.REGION.amazonaws.com[/PATH], nvcr.io/ORG, HOST:PORT[/PATH])")
    if host == DOCKER_HUB and not namespace:
        raise RecipeError(f"registry {text!r}: Docker Hub needs a user or organisation (docker.io/USER)")
    return Registry(host, namespace)


def registry_of(image: str) -> str:
    """The registry host of an image reference ('nvcr.io/nvidia/pytorch:25.06-py3' -> 'nvcr.io'), or docker.io."""
    first = image.split("/", 1)[0]
    host = first.lower() if "/" in image and ("." in first or ":" in first or first == "localhost") else DOCKER_HUB
    return DOCKER_HUB if host in DOCKER_HUB_ALIASES else host


def find_login(logins: dict[str, Any], host: str, where: str) -> tuple[str, Any] | None:
    """The registry_logins entry for registry `host`: keys are matched by their registry host.

    A key may be written as a host ('docker.io', 'reg:5000'), with a path ('docker.io/me'), a
    scheme ('https://index.docker.io/v1/') or a Docker Hub alias. Two keys for one host are refused.
    """
    found = []
    for key, entry in logins.items():
        value = re.sub(r"^[a-z]+://", "", str(key).strip().lower())
        key_host = value.split("/", 1)[0]
        key_host = DOCKER_HUB if key_host in DOCKER_HUB_ALIASES else key_host
        if key_host == host:
            found.append((str(key), entry))
    if len(found) > 1:
        raise ProvisionError(f"{where}: registry_logins has {len(found)} entries for {host}: "
                             f"{', '.join(k for k, _ in found)}; keep one")
    return found[0] if found else None


AWS_NEEDED = ("command -v aws > /dev/null || { echo 'the AWS CLI is not on this builder: give it the aws_cli role "
              "(aws_cli_enabled: true) and run invoke provision'; exit 1; }")


def _ecr_login_sh(registry: Registry) -> str:
    """ECR: a 12-hour token from the builder's AWS credentials, on stdin (AWS ECR user guide, registry auth)."""
    return (f"{AWS_NEEDED}\n"
            f"aws ecr get-login-password --region {registry.ecr['region']} | "
            f"docker login --username AWS --password-stdin {q(registry.host)} || exit 1")


def _login_sh(host: str, logins: dict[str, Any], host_name: str) -> tuple[str, list[str]]:
    """Shell that logs docker in to registry `host`, and the secret values it carries (for redaction)."""
    ecr = ECR_HOST.match(host)
    where = f"host {host_name}"
    found = find_login(logins, host, where)
    if ecr and found is None:
        return _ecr_login_sh(Registry(host)), []
    if found is None:
        return "", []  # a registry that needs no login, or one the builder is already logged in to
    key, entry = found
    if not isinstance(entry, dict) or "password" not in entry:
        raise ProvisionError(f"{where}: registry_logins[{key!r}] needs username and password")
    resolved = resolve_secrets(entry, host_name)
    password = resolved["password"]
    value = password.value if isinstance(password, Secret) else str(password)
    username = "$oauthtoken" if host == "nvcr.io" else str(resolved.get("username", ""))
    encoded = base64.b64encode(value.encode()).decode()
    return (f"prov_pw=$(printf '%s' '{encoded}' | base64 -d)\n"
            f"printf '%s' \"$prov_pw\" | docker login {q(host)} --username {q(username)} --password-stdin || exit 1"), [value]


def login_sh(host: str, remote: Remote) -> tuple[str, list[str]]:
    """Shell logging the builder's docker in to registry `host` with its inventory credentials (or nothing)."""
    variables = {**from_deepops(remote.host.vars), **remote.host.vars}  # DeepOps's docker_login_registries too
    return _login_sh(host, variables.get("registry_logins") or {}, remote.host.name)


def ecr_repository_sh(registry: Registry, repository: str) -> str:
    """Shell creating the ECR repository when it is missing (ECR refuses a push to a missing one)."""
    ecr = registry.ecr
    common = f"--region {ecr['region']} --registry-id {ecr['account']}"
    return (f"{AWS_NEEDED}\n"
            f"aws ecr describe-repositories {common} --repository-names {q(repository)} > /dev/null 2>&1 || "
            f"{{ echo '== provision: creating ECR repository {repository}'; "
            f"aws ecr create-repository {common} --repository-name {q(repository)} > /dev/null || exit 1; }}")


def check_push(registry: str, tags: list[str]) -> Registry:
    """The parsed registry, once it and every tag are valid: refused (RecipeError) before any connection."""
    _check_tags(tags)
    return parse_registry(registry)


def _check_tags(tags: list[str]) -> None:
    for tag in tags:
        if not TAG.match(tag):
            raise RecipeError(f"push: tag {tag!r} is not a docker tag (letters, digits, _ . -; up to 128)")


def push_script(recipe: Recipe, registry: Registry, tags: list[str], login: str) -> tuple[str, list[str]]:
    """The push script (login, ECR repository, a tag and a push per tag) and the references it pushes."""
    _check_tags(tags)
    name = str(recipe.values["name"])
    targets = [registry.reference(name, tag) for tag in dict.fromkeys(tags)]
    lines = [login]
    if registry.ecr:
        lines.append(ecr_repository_sh(registry, registry.repository(name)))
    if recipe.multi_platform:
        lines += [_manifest_list_sh(recipe, registry, target) for target in targets]
    else:
        lines += [f"docker tag {q(recipe.image)} {q(target)} || exit 1" for target in targets]
        lines += [f"docker push {q(target)} 2>&1 || exit 1" for target in targets]
    return "\n".join(filter(None, lines)) + "\n", targets


def _manifest_list_sh(recipe: Recipe, registry: Registry, target: str) -> str:
    """Each platform's image pushed as TARGET-ARCH, then one manifest list TARGET naming them all.

    `docker manifest` talks to the registry itself: --insecure only for a registry the daemon was
    told is insecure (its IndexConfigs entry says Secure false), as docker push would treat it.
    """
    per_platform = [(recipe.image_for(platform), f"{target}-{arch_of(platform)}") for platform in recipe.platforms]
    lines = [f"docker tag {q(image)} {q(ref)} || exit 1\ndocker push {q(ref)} 2>&1 || exit 1" for image, ref in per_platform]
    index = "{{with index .RegistryConfig.IndexConfigs %s}}{{.Secure}}{{end}}" % f'"{registry.host}"'
    lines.append(f"insecure=\n[ \"$(docker info --format {q(index)} 2>/dev/null)\" != false ] || insecure=--insecure\n"
                 f"docker manifest rm {q(target)} > /dev/null 2>&1\n"
                 f"docker manifest create $insecure {q(target)} {' '.join(q(ref) for _, ref in per_platform)} || exit 1\n"
                 f"docker manifest push $insecure --purge {q(target)} 2>&1 || exit 1")
    return "\n".join(lines)


def push(recipe: Recipe, remote: Remote, registry: str, on_line: Callable[[str], None] | None = None,
         extra_tags: list[str] | None = None) -> list[str]:
    """Push the built image to `registry` (Docker Hub, ECR, nvcr.io or any other) under its tag and
    `extra_tags`; return the references pushed."""
    tags = [str(recipe.values["tag"]), *(extra_tags or [])]
    where = check_push(registry, tags)
    login, secrets = login_sh(where.host, remote)
    script, targets = push_script(recipe, where, tags, login)
    remote.run(f"docker push {', '.join(targets)}", script, on_line, secrets)
    return targets
