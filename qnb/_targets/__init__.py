"""Where jobs run: the target protocol, the registry, and the built-in kinds."""

from ._simulators import (
    ItemOutcome,
    Target,
    TargetJob,
    TargetRegistry,
    register_target,
    registry,
)

__all__ = ["ItemOutcome", "Target", "TargetJob", "TargetRegistry", "register_target", "registry"]
