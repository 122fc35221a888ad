"""The expected errors of provision: each becomes one red line at the CLI."""


class ProvisionError(Exception):
    """An expected failure whose message names the file, task, host and value involved."""


class InventoryError(ProvisionError):
    """The inventory is malformed or names something that does not exist."""


class RoleError(ProvisionError):
    """A role, task, handler, argument, template or variable is invalid."""


class ConnectError(ProvisionError):
    """A host could not be reached, or its link was lost."""


class TransientConnectError(ConnectError):
    """A connection failed for a reason that may pass (no route, refused, reset, timed out): worth another attempt."""


class HostKeyError(ConnectError):
    """A host presented a key that known_hosts does not vouch for."""


class StepFailed(ProvisionError):
    """A step of the compiled script failed on a host."""


class PipelineError(ProvisionError):
    """A pipeline stage failed; the message names the stage, why, and how to go on from there."""


class RemoteError(ProvisionError):
    """A pipeline command failed on a host; the message has the command's last lines."""


class RecipeError(ProvisionError):
    """A recipe that is malformed, names a missing file, or targets GPUs its base image cannot run on."""


class UserDataError(ProvisionError):
    """User-data that cannot be made: over the EC2 size limit, undeclared facts, a secret with no boot-time source."""


class LabError(ProvisionError):
    """The lab could not build, start, reach or tear down a test host."""


class PreflightError(ProvisionError):
    """A requested (or detected) GPU stack cannot work; the message says what to choose instead."""


class CompatTableError(ProvisionError):
    """gpu_compat.yml is malformed; the message names the file, the section, the row and its line."""


class ShipError(ProvisionError):
    """A file could not be shipped (bad source, far end refused, remote step failed)."""


class NoRoomError(ShipError):
    """The destination has less free space than the part still to send; nothing was sent."""


class VerifyError(ShipError):
    """The far end's sha256 differs from the sender's; nothing was renamed to the final name."""


class KeptPartMismatchError(VerifyError):
    """A resumed ship's whole-file sha256 differed: the part kept at the far end was not the source's (it was removed)."""


class LinkLostError(ConnectError):
    """The link died mid-transfer; the partial file stays at the far end for the next ship."""
