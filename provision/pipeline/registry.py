"""invoke push: log the builder in to a registry (password on stdin only), tag and push the image."""
from __future__ import annotations

import base64
import re
from typing import Any, Callable

from provision.ansible_names import from_deepops
from provision.errors import ProvisionError
from provision.ops.base import q
from provision.pipeline.recipes import Recipe
from provision.pipeline.remote import Remote
from provision.secrets import Secret, resolve_secrets

ECR = re.compile(r"^\d{12}\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com$")


def _login_sh(registry: str, logins: dict[str, Any], host: str) -> tuple[str, list[str]]:
    """Shell that logs docker in to `registry`, and the secret values it carries (for redaction)."""
    ecr = ECR.match(registry)
    if ecr:
        return (f"aws ecr get-login-password --region {ecr['region']} | "
                f"docker login --username AWS --password-stdin {q(registry)} || exit 1"), []
    entry = logins.get(registry)
    if entry is None:
        return "", []  # a registry that needs no login, or one the builder is already logged in to
    if not isinstance(entry, dict) or "password" not in entry:
        raise ProvisionError(f"host {host}: registry_logins[{registry!r}] needs username and password")
    resolved = resolve_secrets(entry, host)
    password = resolved["password"]
    value = password.value if isinstance(password, Secret) else str(password)
    username = "$oauthtoken" if registry == "nvcr.io" else str(resolved.get("username", ""))
    encoded = base64.b64encode(value.encode()).decode()
    return (f"prov_pw=$(printf '%s' '{encoded}' | base64 -d)\n"
            f"printf '%s' \"$prov_pw\" | docker login {q(registry)} --username {q(username)} --password-stdin || exit 1"), [value]


def registry_of(image: str) -> str:
    """The registry part of an image reference ('nvcr.io/nvidia/pytorch:25.06-py3' -> 'nvcr.io'), or docker.io."""
    first = image.split("/", 1)[0]
    return first if "/" in image and ("." in first or ":" in first or first == "localhost") else "docker.io"


def login_sh(registry: str, remote: Remote) -> tuple[str, list[str]]:
    """Shell logging the builder's docker in to `registry` with its inventory credentials (or nothing)."""
    variables = {**from_deepops(remote.host.vars), **remote.host.vars}  # DeepOps's docker_login_registries too
    return _login_sh(registry, variables.get("registry_logins") or {}, remote.host.name)


def push(recipe: Recipe, remote: Remote, registry: str, on_line: Callable[[str], None] | None = None) -> str:
    """Push the built image to `registry` (Docker Hub, ECR, nvcr.io or any other); return its reference."""
    registry = registry.rstrip("/")
    target = f"{registry}/{recipe.image}"
    login, secrets = login_sh(registry, remote)
    script = "\n".join(filter(None, [login, f"docker tag {q(recipe.image)} {q(target)} || exit 1",
                                     f"exec docker push {q(target)} 2>&1"]))
    remote.run(f"docker push {target}", script + "\n", on_line, secrets)
    return target
