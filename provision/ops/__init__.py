"""Operations: each compiles to a guarded shell step (check, apply)."""
from provision.ops import apt, files, system  # noqa: F401  (each module registers its operations)
from provision.ops.base import OPERATIONS, OpContext, Operation, Step

__all__ = ["OPERATIONS", "OpContext", "Operation", "Step"]
