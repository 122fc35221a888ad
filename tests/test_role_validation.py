"""Everything wrong in roles or variables is refused before any connection, with an exact message."""
from __future__ import annotations

import pytest

from provision.cli import prepare
from provision.errors import ProvisionError, RoleError
from tests.helpers import roles_with, write

# 192.0.2.0/24 is TEST-NET-1: nothing answers there, and prepare() must not try.
INVENTORY = """
    all:
      hosts:
        target: {ansible_host: 192.0.2.1, roles: [broken]}
"""


def refused(tmp_path, monkeypatch, files: dict[str, str], extra=None, roles_option=None) -> str:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "hosts" / "inventory.yml", INVENTORY)
    roles = roles_with(tmp_path, {"broken": files})
    with pytest.raises(ProvisionError) as error:
        prepare(tmp_path / "hosts", "target", None, roles_option, extra or {}, roles)
    return str(error.value)


def known_roles(tmp_path) -> str:
    from provision.roles import available_roles

    names = available_roles(tmp_path / "roles")
    assert {"base", "broken", "helper_tools"} <= set(names)
    return ", ".join(names)


def test_malformed_role_yaml(tmp_path, monkeypatch):
    message = refused(tmp_path, monkeypatch, {"tasks.yml": "- name: x\n  file: {path: /x\n"})
    assert message.startswith("roles/broken/tasks.yml:3:1: malformed YAML")


def test_unknown_role(tmp_path, monkeypatch):
    message = refused(tmp_path, monkeypatch, {"tasks.yml": "[]\n"}, roles_option="helper_tool")
    assert message == f"unknown role 'helper_tool' (asked for); roles in roles/: {known_roles(tmp_path)}"


def test_unknown_role_in_dependencies(tmp_path, monkeypatch):
    message = refused(tmp_path, monkeypatch, {"tasks.yml": "[]\n", "meta.yml": "dependencies: [bsae]\n"})
    assert message == f"unknown role 'bsae' (a dependency in roles/broken/meta.yml); roles in roles/: {known_roles(tmp_path)}"


def test_unknown_operation(tmp_path, monkeypatch):
    message = refused(tmp_path, monkeypatch, {"tasks.yml": "- name: Install\n  apt_package: {names: [tmux]}\n"})
    assert message.startswith("roles/broken/tasks.yml:1 (task 'Install'): unknown operation 'apt_package' (operations: apt_packages, apt_repo,")


def test_unknown_argument(tmp_path, monkeypatch):
    message = refused(tmp_path, monkeypatch, {"tasks.yml": "- name: Install\n  apt_packages: {name: [tmux]}\n"})
    assert message == (
        "roles/broken/tasks.yml:1 (task 'Install'): unknown argument 'name' for apt_packages "
        "(it takes: cache_valid_time, hold, install_recommends, names, purge, state, until_installed, version)"
    )


def test_missing_argument(tmp_path, monkeypatch):
    message = refused(tmp_path, monkeypatch, {"tasks.yml": "- name: Write\n  file: {content: x}\n"})
    assert message == "roles/broken/tasks.yml:1 (task 'Write'): file needs argument 'path'"


def test_unknown_handler(tmp_path, monkeypatch):
    message = refused(tmp_path, monkeypatch, {
        "tasks.yml": "- name: Configure\n  file: {path: /etc/x, content: y}\n  notify: restart dockr\n",
        "handlers.yml": "- name: restart docker\n  service: {name: docker, state: restarted}\n",
    })
    assert message == "roles/broken/tasks.yml:1 (task 'Configure'): notify 'restart dockr' matches no handler; handlers: restart docker"


def test_undefined_variable_in_a_task(tmp_path, monkeypatch):
    message = refused(tmp_path, monkeypatch, {
        "tasks.yml": "- name: Write\n  file: {path: /etc/x, content: '{{ broken_conent }}'}\n",
        "defaults.yml": "broken_content: hello\n",
    })
    assert message == "roles/broken/tasks.yml:1 (task 'Write'): undefined variable: 'broken_conent' is undefined in '{{ broken_conent }}'"


def test_undefined_variable_in_a_template_names_its_line(tmp_path, monkeypatch):
    message = refused(tmp_path, monkeypatch, {
        "tasks.yml": "- name: Render\n  template: {src: app.conf.j2, dest: /etc/app.conf}\n",
        "templates/app.conf.j2": "# app\nport = {{ broken_port }}\nhost = {{ broken_hots }}\n",
        "defaults.yml": "broken_port: 80\nbroken_host: x\n",
    })
    assert message == "roles/broken/templates/app.conf.j2:3 (roles/broken/tasks.yml:1 (task 'Render')): undefined variable: 'broken_hots' is undefined"


def test_misspelt_role_variable_from_the_command_line(tmp_path, monkeypatch):
    message = refused(tmp_path, monkeypatch, {"tasks.yml": "[]\n"}, extra={"helper_tools_pakages": ["x"]})
    assert message == ("unknown variable 'helper_tools_pakages' (-e): did you mean 'helper_tools_packages'? "
                       "role helper_tools defines helper_tools_extra, helper_tools_packages")


def test_command_without_a_guard_is_refused(tmp_path, monkeypatch):
    message = refused(tmp_path, monkeypatch, {"tasks.yml": "- name: Build\n  command: {run: [make]}\n"})
    assert message == "roles/broken/tasks.yml:1 (task 'Build'): command needs creates, unless or unless_shell, or it would run every time"


def test_unquoted_mode_is_refused(tmp_path, monkeypatch):
    message = refused(tmp_path, monkeypatch, {"tasks.yml": "- name: Write\n  file: {path: /x, content: y, mode: 0644}\n"})
    assert message == "roles/broken/tasks.yml:1 (task 'Write'): mode 420 must be a quoted string such as '0644'"



@pytest.mark.parametrize("key", ["owner", "group"])
def test_owner_or_group_that_is_not_a_user_name_is_refused(tmp_path, monkeypatch, key):
    task = f"- name: Write\n  file: {{path: /x, content: y, {key}: 'root; rm -rf /'}}\n"
    message = refused(tmp_path, monkeypatch, {"tasks.yml": task})
    assert message.startswith(f"roles/broken/tasks.yml:1 (task 'Write'): {key} ") and "'root; rm -rf /'" in message


@pytest.mark.parametrize("run", ["make all", "[]"])
def test_command_run_that_is_not_a_list_of_arguments_is_refused(tmp_path, monkeypatch, run):
    message = refused(tmp_path, monkeypatch, {"tasks.yml": f"- name: Build\n  command: {{run: {run}, creates: /x}}\n"})
    assert message.startswith("roles/broken/tasks.yml:1 (task 'Build'): command run must be a non-empty list of arguments")


def test_package_names_given_as_a_mapping_are_refused(tmp_path, monkeypatch):
    message = refused(tmp_path, monkeypatch, {"tasks.yml": "- name: Install\n  apt_packages: {names: {tmux: 1}}\n"})
    assert message == ("roles/broken/tasks.yml:1 (task 'Install'): names must be a string or a list of strings, "
                       "got {'tmux': 1}")

# The systems the roles are for (Ubuntu LTS releases, amd64 and arm64) and the lab's Debian.
SUPPORTED_SYSTEMS = [
    {"os_id": "ubuntu", "os_version_id": "22.04", "os_codename": "jammy", "arch": "amd64"},
    {"os_id": "ubuntu", "os_version_id": "24.04", "os_codename": "noble", "arch": "amd64"},
    {"os_id": "ubuntu", "os_version_id": "24.04", "os_codename": "noble", "arch": "arm64"},
    {"os_id": "debian", "os_version_id": "12", "os_codename": "bookworm", "arch": "amd64"},
]
EXAMPLE_GPUS = {"v100": "10de:1db1", "t4": "10de:1eb8", "none": None}


@pytest.mark.parametrize("gpu", sorted(EXAMPLE_GPUS))
@pytest.mark.parametrize("system", SUPPORTED_SYSTEMS, ids=lambda s: f"{s['os_id']}{s['os_version_id']}-{s['arch']}")
def test_shipped_roles_render_every_task_and_template_for_each_supported_system(system, gpu, monkeypatch):
    """Every shipped role, with the shipped builder variables, compiles for each system to a script sh can parse."""
    import subprocess

    from provision.compiler import plan_host, render_script
    from provision.facts import EXAMPLE_FACTS
    from provision.inventory import load_inventory
    from provision.roles import available_roles, load_roles
    from tests.helpers import PROJECT

    monkeypatch.setenv("NGC_API_KEY", "nvapi-example")
    host = load_inventory(PROJECT / "hosts").host("p3-builder")
    names = host.vars["roles"]
    assert set(names) == set(available_roles(PROJECT / "roles")), "the builder group names every shipped role"
    roles = load_roles(PROJECT / "roles", names)
    pci_id = EXAMPLE_GPUS[gpu]
    facts = {**EXAMPLE_FACTS, **system,
             "gpus": [{"slot": "0000:00:1e.0", "pci_id": pci_id, "class": "0x030200"}] if pci_id else []}
    extra = {"base_apt_proxy": "http://10.0.0.1:3142", "base_apt_proxy_direct": ["repo.example"],
             "aws_cli_enabled": True}  # otherwise installed only for an ECR login
    if system["os_id"] == "debian":  # Ubuntu-only sources are refused there (tests/test_vendor_routes.py)
        extra.update(nvidia_driver_route="cuda-repo", apptainer_source="deb")
    plan = plan_host(roles, host, extra, facts)
    without_gpu = {"nvidia_driver", "verify"} if not pci_id else set()
    built_in = {"dpkg"}  # the repair of an interrupted dpkg, planned before the first apt step
    assert {p.task.role for p in plan.steps} == set(names) - without_gpu | built_in, "every role has a step here"

    rendered = {}
    for planned in plan.steps + plan.handlers:
        if planned.task.op.name == "template":
            rendered[f"{planned.task.role}/{planned.task.args['src']}"] = planned.step.desired.decode()
    shipped = {f"{path.parent.parent.name}/{path.name}" for path in (PROJECT / "roles").glob("*/templates/*")
               if path.parent.parent.name not in without_gpu}
    assert set(rendered) == shipped, "every shipped template is rendered"
    for name, text in rendered.items():
        assert "{{" not in text and "{%" not in text and text.strip(), name
    assert 'Acquire::http::Proxy::repo.example "DIRECT";' in rendered["base/apt-proxy.conf.j2"]

    script = render_script(plan)
    parsed = subprocess.run(["sh", "-n"], input=script, text=True, capture_output=True)
    assert parsed.returncode == 0, parsed.stderr
    if system["arch"] == "arm64":
        assert "amd64" not in script.replace("amd64)", ""), "nothing amd64-only on arm64"
