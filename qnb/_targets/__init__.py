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
    TargetRegistry,
)
from ._simulators import EmulatorTarget, SimulatorTarget, register_target, registry

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
    "register_target",
    "registry",
]
