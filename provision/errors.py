"""The expected errors of provision: each becomes one red line at the CLI."""


class ProvisionError(Exception):
    """An expected failure whose message names the file, task, host and value involved."""


class InventoryError(ProvisionError):
    """The inventory is malformed or names something that does not exist."""


class RoleError(ProvisionError):
    """A role, task, handler, argument, template or variable is invalid."""


class ConnectError(ProvisionError):
    """A host could not be reached, or its link was lost."""


class HostKeyError(ConnectError):
    """A host presented a key that known_hosts does not vouch for."""


class StepFailed(ProvisionError):
    """A step of the compiled script failed on a host."""
