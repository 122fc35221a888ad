"""What a run did, per step and per host: the data behind the live view, summary and JSON report."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class StepResult:
    id: int
    role: str
    task: str
    status: str  # ok, changed, would-change, skipped, failed, reboot
    detail: str = ""
    log: list[str] = field(default_factory=list)
    diff: str = ""


@dataclass
class HostResult:
    host: str
    status: str = "pending"  # ok, changed, failed, unreachable
    steps: list[StepResult] = field(default_factory=list)
    error: str = ""
    exec_count: int = 0
    reboots: int = 0
    reconnects: int = 0
    seconds: float = 0.0
    check_mode: bool = False

    def count(self, status: str) -> int:
        return sum(1 for step in self.steps if step.status == status)

    @property
    def changed(self) -> int:
        return self.count("would-change" if self.check_mode else "changed")

    @property
    def failed(self) -> bool:
        return self.status in ("failed", "unreachable")

    def as_dict(self) -> dict:
        data = asdict(self)
        data.update(ok=self.count("ok"), changed=self.changed, skipped=self.count("skipped"))
        return data
