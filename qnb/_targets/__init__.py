"""Where jobs run: the target shapes, the registry, and the built-in kinds."""

from ._base import (
    Executor,
    ItemOutcome,
    QueueBackend,
    QueueOwningTarget,
    RunState,
    ScheduledTarget,
    Target,
    TargetJob,
)
from ._remote import VendorJobState, VendorTarget
from ._registry import TargetRegistry, register_kind, register_target, registry
from ._simulators import EmulatorTarget, SimulatorTarget

__all__ = [
    "EmulatorTarget",
    "Executor",
    "ItemOutcome",
    "QueueBackend",
    "QueueOwningTarget",
    "RunState",
    "ScheduledTarget",
    "SimulatorTarget",
    "Target",
    "TargetJob",
    "TargetRegistry",
    "VendorJobState",
    "VendorTarget",
    "register_kind",
    "register_target",
    "registry",
]
