"""Parameter sweeps: a job's items are (circuit, resolver) pairs.

A sweep is anything Cirq calls a ``cirq.Sweepable`` (``cirq.Points``, ``Linspace``,
``Zip``, ``Product``, ``ListSweep``, resolvers, dicts, lists of them). Each point of a
circuit's sweep is one item, labelled ``"label[k]"`` (k from 0, in sweep order), whose
circuit is resolved at submit — so every check (measurements, device, limits) sees what
will run, and every target runs it unchanged. The item keeps its resolver (Cirq JSON),
which its ``cirq.Result`` carries back as ``params``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence

import cirq

from ._errors import InvalidCircuitError, InvalidOptionError

_POINT_LABEL = re.compile(r"^(?P<base>.*)\[(?P<index>\d+)\]$")


@dataclasses.dataclass(frozen=True)
class SweptItems:
    """A job's items after expanding sweeps, in item order."""

    circuits: dict[str, cirq.Circuit]  # item label -> resolved circuit
    params: list[str | None]  # per item: the resolver as Cirq JSON, None when not swept


def resolvers(params: object) -> list[cirq.ParamResolver]:
    """The points of a sweep, in order; a clear error for what is not a sweep."""
    if isinstance(params, (str, bytes)):
        raise InvalidOptionError(
            f"params must be a sweep (cirq.Linspace, cirq.Points, a dict of symbol -> value, "
            f"...), got the text {params!r}; in %%qsubmit use --sweep 'theta=linspace(0, pi, 20)'"
        )
    try:
        found = list(cirq.to_resolvers(params))
    except (TypeError, ValueError) as exc:
        raise InvalidOptionError(
            f"params is not a Cirq sweep ({type(params).__name__}: {exc}); give a "
            "cirq.Sweepable: cirq.Linspace('theta', 0, 1, 20), cirq.Points(...), a dict "
            "symbol -> value, or a list of dicts"
        ) from None
    if not found:
        raise InvalidOptionError("params is an empty sweep: give at least one point")
    return found


def expand(
    labelled: Mapping[str, cirq.Circuit],
    sweeps: Mapping[str, Sequence[cirq.ParamResolver]],
) -> SweptItems:
    """Items for each circuit and each point of its sweep (circuits without a sweep in
    ``sweeps`` are one item, unchanged)."""
    circuits: dict[str, cirq.Circuit] = {}
    params: list[str | None] = []
    for label, circuit in labelled.items():
        points = sweeps.get(label)
        if points is None:
            circuits[label] = circuit
            params.append(None)
            continue
        for k, resolver in enumerate(points):
            item = point_label(label, k)
            if item in labelled:
                raise InvalidCircuitError(
                    f"the sweep of circuit {label!r} labels its points {label}[0], "
                    f"{label}[1], ...; a circuit is already labelled {item!r}: rename it"
                )
            circuits[item] = cirq.resolve_parameters(circuit, resolver)
            params.append(cirq.to_json(resolver, indent=None))
    return SweptItems(circuits, params)


def point_label(label: str, index: int) -> str:
    return f"{label}[{index}]"


def base_label(item_label: str) -> str:
    """The circuit an item's label belongs to (``"ansatz[3]"`` -> ``"ansatz"``)."""
    match = _POINT_LABEL.match(item_label)
    return match.group("base") if match else item_label


def resolver_of(text: str | None) -> cirq.ParamResolver:
    return cirq.ParamResolver() if text is None else cirq.read_json(json_text=text)
