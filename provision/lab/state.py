"""The lab's record of what it made, kept in state_dir so a later run can tear it down."""

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class HostRecord:
    """What the lab remembers of one host."""

    address: str
    systemd: bool
    host_key: str
    record_host_key: bool = True
    flavour: str = ""
    arch: str = ""  # "" for this machine's architecture


@dataclass
class LabState:
    """Hosts by name, and this machine's settings as they were before the lab touched them."""

    hosts: dict[str, HostRecord] = field(default_factory=dict)
    saved_settings: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> "LabState":
        """The state saved at `path`; an empty one if missing or unreadable (after a crash)."""
        try:
            data = json.loads(path.read_text())
            hosts = {name: HostRecord(**record) for name, record in data["hosts"].items()}
            return cls(hosts, dict(data.get("saved_settings", {})))
        except (OSError, ValueError, KeyError, TypeError):
            return cls()

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(json.dumps(asdict(self), indent=2) + "\n")
        temporary.replace(path)
