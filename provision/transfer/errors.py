"""The expected failures of a ship: each names the host, the file and the figures involved."""
from provision.errors import ConnectError, ProvisionError


class ShipError(ProvisionError):
    """A file could not be shipped (bad source, far end refused, remote step failed)."""


class NoRoomError(ShipError):
    """The destination has less free space than the part still to send; nothing was sent."""


class VerifyError(ShipError):
    """The far end's sha256 differs from the sender's; nothing was renamed to the final name."""


class LinkLostError(ConnectError):
    """The link died mid-transfer; the partial file stays at the far end for the next ship."""
