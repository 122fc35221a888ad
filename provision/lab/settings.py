"""This machine's network settings that lab services may change, saved and put back on teardown."""

import shutil
import subprocess
from pathlib import Path

from provision.lab.commands import run

IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")


def snapshot() -> dict[str, str]:
    """ip_forward and, where iptables is installed, the policy of each filter chain."""
    saved = {"ip_forward": IP_FORWARD.read_text().strip()}
    if shutil.which("iptables"):
        rules = subprocess.run(["iptables", "-S"], capture_output=True, text=True).stdout
        for line in rules.splitlines():
            if line.startswith("-P "):
                _, chain, policy = line.split()
                saved[f"iptables {chain}"] = policy
    return saved


def restore(saved: dict[str, str]) -> list[str]:
    """Put back what `snapshot` saw where it changed since; return what was put back."""
    now = snapshot()
    restored = []
    for setting, value in saved.items():
        if now.get(setting) == value:
            continue
        if setting == "ip_forward":
            IP_FORWARD.write_text(value + "\n")
        elif setting.startswith("iptables "):
            chain = setting.split()[1]
            run(["iptables", "-P", chain, value], what=f"restoring the iptables {chain} policy")
        restored.append(f"{setting}={value}")
    return restored
