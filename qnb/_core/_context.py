"""What the core's parts share: one lock, one loop, the live records, the store."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from pathlib import Path

from .._errors import QnbError
from .._records import JobRecord
from .._store import Store
from .._targets import TargetRegistry


@dataclasses.dataclass(eq=False)
class Core:
    """The state of one process's job core. Every part changes records only under
    ``lock``; anything slow runs on ``loop`` (its own daemon thread)."""

    home: Path
    store: Store
    targets: TargetRegistry
    #: This process's owner id (see :mod:`._ownership`).
    owner: str
    loop: asyncio.AbstractEventLoop
    lock: threading.RLock = dataclasses.field(default_factory=threading.RLock)
    #: Jobs this process runs or follows, by id (finished ones are bounded, see
    #: :class:`~._persistence.WriteBehind`).
    records: dict[str, JobRecord] = dataclasses.field(default_factory=dict)
    closed: bool = False

    def check_open(self) -> None:
        if self.closed:
            raise QnbError("this JobManager is closed")
