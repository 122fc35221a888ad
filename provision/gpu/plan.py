"""The preflight decision as roles see it: `nvidia.branch`, `nvidia.flavour`... decided on first use."""
from __future__ import annotations

from typing import Any

from provision.gpu.preflight import Decision, decide

REQUEST_KEYS = ("nvidia_driver_route", "nvidia_driver_branch", "nvidia_driver_flavour", "cuda_version", "ngc_pytorch_tag")


def request_from(variables: dict[str, Any]) -> dict[str, Any]:
    """The preflight request in a host's variables; empty values mean 'decide for me'."""
    return {key: (str(variables[key]) if variables.get(key) not in (None, "") else None) for key in REQUEST_KEYS}


class NvidiaView:
    """Lazy: hosts whose roles never read `nvidia` are never judged by preflight."""

    def __init__(self, facts: dict[str, Any], variables: dict[str, Any]):
        self._facts, self._variables = facts, variables
        self._decision: Decision | None = None

    @property
    def decision(self) -> Decision:
        if self._decision is None:
            self._decision = decide(self._facts, request_from(self._variables))
        return self._decision

    @property
    def gpus(self) -> list[str]:
        return [gpu.model for gpu in self.decision.gpus]

    @property
    def route(self) -> str | None:
        return self.decision.driver_route.value

    @property
    def branch(self) -> str | None:
        return self.decision.driver_branch.value

    @property
    def flavour(self) -> str | None:
        return self.decision.driver_flavour.value

    @property
    def cuda_ceiling(self) -> str | None:
        return self.decision.cuda_ceiling.value

    @property
    def ubuntu_driver(self) -> str | None:
        """The ubuntu-drivers name for the branch and flavour: '580-server', '595-server-open', '610-open'."""
        return self.decision.ubuntu_driver

    @property
    def cuda_repo_key(self) -> str | None:
        """The key file NVIDIA signs this release's CUDA repository with: '3bf863cc.pub', '60DF8A40.pub' (26.04)."""
        return self.decision.cuda_repo_key

    @property
    def ngc_pytorch_tag(self) -> str | None:
        return self.decision.ngc_pytorch_tag.value
