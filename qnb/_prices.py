"""What a job costs, before it runs: one dated price table per vendor and device.

(Being built: issue 20. Until then every target is priced as a local one.)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

from ._estimate import CircuitFeatures


@dataclasses.dataclass(frozen=True)
class Cost:
    """A job's estimated cost: ``amount`` in ``currency`` (0.0 and None on a local
    target; None and a reason in ``basis`` where no price is known)."""

    amount: float | None
    currency: str | None
    basis: str


def cost_at_submit(
    target: object,
    features: Sequence[CircuitFeatures],
    shots: int,
    *,
    max_cost: float | None,
    spent: Callable[[], Mapping[str | None, float]] | None,
) -> Cost:
    """The cost of a job of these circuits on ``target``; over ``max_cost`` or the
    target's budget (``spent()`` so far plus this), a ``CostLimitError``."""
    return Cost(0.0, None, "")
