"""EC2 user-data: the same compiled script, wrapped for cloud-init, resuming after reboot points."""
from __future__ import annotations

import base64
import gzip
from dataclasses import dataclass
from email.charset import Charset
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from typing import Any

from provision.compiler import Plan, plan_host, render_script
from provision.facts import EXAMPLE_FACTS
from provision.gpu.compat import instance_gpus
from provision.inventory import Host
from provision.ops.base import q
from provision.values import one_line
from provision.roles import Role
from provision.errors import UserDataError  # noqa: F401  (defined with the others)

EC2_LIMIT = 16384
STATE = "/var/lib/provision"
LOG = "/var/log/provision-userdata.log"
STATUS = f"{STATE}/userdata-status"


@dataclass
class UserData:
    body: bytes
    format: str
    script_bytes: int
    plan: Plan

    @property
    def budget_left(self) -> int:
        return EC2_LIMIT - len(self.body)


def declared_facts(host: Host) -> dict[str, Any]:
    """The facts a fresh instance will have, from the inventory's `declared_facts` (checked again at boot)."""
    declared = host.vars.get("declared_facts")
    if not isinstance(declared, dict) or not {"os_id", "os_version_id", "os_codename"} <= set(declared):
        raise UserDataError(
            f"host {host.name}: user-data needs declared_facts with os_id, os_version_id and os_codename "
            f"(e.g. {{os_id: ubuntu, os_version_id: '22.04', os_codename: jammy, arch: amd64, instance_type: p3.2xlarge}})"
        )
    facts = {**EXAMPLE_FACTS, "user": "root", "systemd": True, "sudo": True, "hostname": host.name,
             "gpus": [], "arch": "amd64", **declared}
    facts["os_version_id"] = str(facts["os_version_id"])
    instance = facts.get("instance_type")
    if instance and not declared.get("gpus"):
        found = instance_gpus(str(instance))
        if found:
            facts["gpus"] = [{"slot": None, "pci_id": found.gpu.pci_id, "class": "0x030200"}] * found.count
            if "arch" not in declared:
                facts["arch"] = found.arch
    return facts


def _secrets_at_boot(plan: Plan, embed: bool) -> str:
    """Shell setting each secret at boot: from SSM (AWS CLI, installed if missing), or embedded on request."""
    lines = []
    for name, secret in sorted(plan.secrets.items()):
        if secret.ssm_parameter:
            lines += [
                "command -v aws > /dev/null 2>&1 || prov_apt install awscli > /dev/null 2>&1 "
                "|| snap install aws-cli --classic > /dev/null 2>&1",
                f"{name}=$(aws ssm get-parameter --with-decryption --name {q(secret.ssm_parameter)} "
                "--query Parameter.Value --output text) || { prov_say 0 failed 1 cannot read a secret from SSM; exit 1; }",
            ]
        elif embed and secret.value:
            encoded = base64.b64encode(secret.value.encode()).decode()
            lines.append(f"{name}=$(printf '%s' '{encoded}' | base64 -d)")
        else:
            raise UserDataError(
                f"host {plan.host}: secret {secret.name} has no boot-time source: set it to "
                f"{{secret_ssm: /path/in/parameter-store}}, or pass --embed-secrets to put its value in the user-data "
                f"(readable by any process on the instance through the metadata service)"
            )
    return "\n".join(lines)


def _fact_check(facts: dict[str, Any], host: str) -> str:
    """Shell that stops the run, with a clear log line, on an instance unlike the declared one."""
    want = f"{facts['os_id']} {facts['os_version_id']} {facts['arch']}"
    lines = [
        ". /etc/os-release",
        'have="$ID $VERSION_ID $(dpkg --print-architecture)"',
        f'if [ "$have" != {q(want)} ]; then',
        f'  printf "provision: this instance is %s, but the user-data for %s was made for %s\\n" "$have" {q(host)} {q(want)}',
        f'  echo "failed facts" > {STATUS}; rm -f {STATE}/userdata-pending; exit 1',
        "fi",
    ]
    gpu_ids = sorted({_device_id(g, host) for g in facts.get("gpus", [])})
    if gpu_ids:
        lines += [
            "gpus=$(for d in /sys/bus/pci/devices/*; do [ \"$(cat \"$d/vendor\" 2>/dev/null)\" = 0x10de ] "
            "&& cat \"$d/device\"; done | sort -u | tr '\\n' ' ')",
            f'case " $gpus" in *0x{gpu_ids[0]}*) ;; *)',
            f'  printf "provision: no NVIDIA GPU 10de:{gpu_ids[0]} here (found: %s); the user-data for %s was made for %s\\n" '
            f'"${{gpus:-none}}" {q(host)} {q(str(facts.get("instance_type") or "that GPU"))}',
            f'  echo "failed facts" > {STATUS}; rm -f {STATE}/userdata-pending; exit 1 ;;',
            "esac",
        ]
    return "\n".join(lines)


def _device_id(gpu: Any, host: str) -> str:
    """The PCI device id (4 hex digits) of a declared GPU `10de:XXXX`; anything else is refused."""
    pci_id = str(gpu.get("pci_id", "")) if isinstance(gpu, dict) else ""
    vendor, _, device = pci_id.partition(":")
    if len(device) != 4 or any(c not in "0123456789abcdefABCDEF" for c in vendor + device):
        raise UserDataError(f"host {host}: declared_facts gpus: pci_id {pci_id!r} is not VENDOR:DEVICE in hex, e.g. 10de:1db1")
    return device.lower()


def _boot_script(facts: dict[str, Any], host: str) -> str:
    """Runs the provisioning script at first boot and after each reboot point, until it finishes once."""
    return f"""#!/bin/sh
# provision: runs {STATE}/userdata-run.sh for host {one_line(host)}; reboots at reboot points and resumes.
exec >> {LOG} 2>&1
echo "== provision: boot $(cat /proc/sys/kernel/random/boot_id) at $(date -u +%FT%TZ)"
{_fact_check(facts, host)}
echo running > {STATUS}
sh {STATE}/userdata-run.sh > {STATE}/userdata-last.log 2>&1
rc=$?
cat {STATE}/userdata-last.log
if grep -q '^@@prov [0-9]* reboot' {STATE}/userdata-last.log; then
  echo "rebooting" > {STATUS}
  echo "== provision: rebooting at a reboot point; the run resumes at the next boot"
  (sleep 2; reboot) > /dev/null 2>&1 < /dev/null &
  exit 0
fi
rm -f {STATE}/userdata-pending
if grep -q '^@@prov - finished' {STATE}/userdata-last.log; then
  echo "finished" > {STATUS}
  echo "== provision: finished"
else
  echo "failed $rc" > {STATUS}
  echo "== provision: FAILED (exit $rc); the step's output is above"
fi
"""


def _wrapper(script: str, facts: dict[str, Any], host: str) -> str:
    """The user-data shell part: installs the script and the per-boot resume hook, then runs it."""
    return f"""#!/bin/sh
# provision user-data for {one_line(host)}. Log: {LOG}; status: {STATUS} (running, rebooting, finished, failed).
mkdir -p {STATE} /var/lib/cloud/scripts/per-boot
cat > {STATE}/userdata-run.sh <<'PROV_USERDATA_SCRIPT'
{script}PROV_USERDATA_SCRIPT
cat > {STATE}/userdata-boot.sh <<'PROV_USERDATA_BOOT'
{_boot_script(facts, host)}PROV_USERDATA_BOOT
cat > /var/lib/cloud/scripts/per-boot/provision-resume <<'PROV_USERDATA_HOOK'
#!/bin/sh
# provision: resume the user-data run after a reboot point (nothing to do once it finished).
[ -e {STATE}/userdata-pending ] || exit 0
exec sh {STATE}/userdata-boot.sh
PROV_USERDATA_HOOK
chmod 700 {STATE}/userdata-run.sh {STATE}/userdata-boot.sh
chmod 755 /var/lib/cloud/scripts/per-boot/provision-resume
: > {STATE}/userdata-pending
exec sh {STATE}/userdata-boot.sh
"""


def _mime(shell: str) -> bytes:
    """MIME multipart with the script as an 8-bit part (base64 would inflate it and defeat gzip)."""
    charset = Charset("utf-8")
    charset.body_encoding = None
    message = MIMEMultipart(boundary="==provision-userdata==")
    part = MIMEText(shell, "x-shellscript", charset)
    part.add_header("Content-Disposition", "attachment", filename="provision.sh")
    message.attach(part)
    return message.as_bytes()


def build_userdata(roles: list[Role], host: Host, extra: dict[str, Any], fmt: str = "mime",
                   embed_secrets: bool = False) -> UserData:
    """User-data for `host`: gzip'd MIME (default) or a plain shell script, whatever its size."""
    if fmt not in ("mime", "shell"):
        raise UserDataError(f"--format must be mime or shell, got {fmt!r}")
    facts = declared_facts(host)
    plan = plan_host(roles, host, extra, facts, secrets_at_boot=True)
    script = render_script(plan, secrets_sh=_secrets_at_boot(plan, embed_secrets), userdata=True)
    shell = _wrapper(script, facts, host.name)
    body = shell.encode() if fmt == "shell" else gzip.compress(_mime(shell), mtime=0)
    return UserData(body, fmt, len(script.encode()), plan)


def render_userdata(roles: list[Role], host: Host, extra: dict[str, Any], fmt: str = "mime",
                    embed_secrets: bool = False) -> UserData:
    """User-data for `host`, refused (naming the largest steps) over EC2's 16,384 bytes."""
    data = build_userdata(roles, host, extra, fmt, embed_secrets)
    body, plan = data.body, data.plan
    if len(body) > EC2_LIMIT:
        raise UserDataError(
            f"user-data for {host.name} is {len(body):,} bytes, over EC2's {EC2_LIMIT:,}-byte limit; "
            f"largest steps: {', '.join(_largest(plan))}"
            + ("; the gzip'd MIME format is 5-10x smaller" if fmt == "shell" else "")
        )
    return data


def _largest(plan: Plan, count: int = 3) -> list[str]:
    sizes = [(len(p.step.check) + len(p.step.apply), p.label) for p in plan.steps + plan.handlers]
    return [f"{label} ({size:,} bytes)" for size, label in sorted(sizes, reverse=True)[:count]]
