"""Parameter sweeps: a job's items are (circuit, resolver) pairs.

A sweep is anything Cirq calls a ``cirq.Sweepable`` (``cirq.Points``, ``Linspace``,
``Zip``, ``Product``, ``ListSweep``, resolvers, dicts, lists of them). Each point of a
circuit's sweep is one item, labelled ``"label[k]"`` (k from 0, in sweep order), that
keeps the circuit as written and its resolver (Cirq JSON). The circuit is resolved where
it runs (a simulator takes the resolver itself): resolving a 12-qubit ansatz in the
kernel costs ~30 ms a point, as much as simulating it. Its ``cirq.Result`` carries the
resolver back as ``params``.
"""

from __future__ import annotations

import cmath
import dataclasses
import numbers
import sys
from collections.abc import Mapping, Sequence

import cirq
import sympy

from ._errors import InvalidCircuitError, InvalidOptionError
from ._options import point_label


@dataclasses.dataclass(frozen=True)
class SweptItems:
    """A job's items after expanding sweeps, in item order."""

    circuits: dict[str, cirq.Circuit]  # item label -> circuit (the points of a sweep share one)
    resolvers: list[cirq.ParamResolver | None]  # per item; None when not swept
    #: Per item, its circuit's Cirq JSON when the checks wrote it (one text for the
    #: points of a sweep); None where they did not.
    texts: list[str | None] | None = None

    @property
    def params(self) -> list[str | None]:
        """The resolvers as Cirq JSON, for the store."""
        return [None if r is None else cirq.to_json(r, indent=None) for r in self.resolvers]

    @property
    def swept(self) -> bool:
        return any(r is not None for r in self.resolvers)


def resolvers(params: object) -> SweepPoints:
    """The points of a sweep, in order, counted but not built yet (see
    :class:`SweepPoints`); a clear error for what is not a sweep."""
    if isinstance(params, (str, bytes)):
        raise InvalidOptionError(
            f"params must be a sweep (cirq.Linspace, cirq.Points, a dict of symbol -> value, "
            f"...), got the text {params!r}; in %%qsubmit use --sweep 'theta=linspace(0, pi, 20)'"
        )
    try:
        sweeps = cirq.to_sweeps(params)
        count = min(sum(_length(sweep) for sweep in sweeps), sys.maxsize)
    except (TypeError, ValueError) as exc:
        raise InvalidOptionError(
            f"params is not a Cirq sweep ({type(params).__name__}: {exc}); give a "
            "cirq.Sweepable: cirq.Linspace('theta', 0, 1, 20), cirq.Points(...), a dict "
            "symbol -> value, or a list of dicts"
        ) from None
    if not count:
        raise InvalidOptionError("params is an empty sweep: give at least one point")
    return SweepPoints(sweeps, count)


def _length(sweep: cirq.Sweep) -> int:
    """A sweep's number of points without making them (a Product's is the product of
    its factors'), even when it is too large for ``len()``."""
    try:
        return len(sweep)
    except OverflowError:  # above sys.maxsize: refused by any batch limit all the same
        return sys.maxsize


class SweepPoints(Sequence[cirq.ParamResolver]):
    """A sweep's points: their number is known at once, the points are made on first
    use. A job's size is checked against its target's ``max_batch`` before anything
    is made, so a sweep of 10^7 points is refused at once instead of filling memory."""

    def __init__(self, sweeps: list[cirq.Sweep], count: int) -> None:
        self._sweeps = sweeps
        self._count = count
        self._points: list[cirq.ParamResolver] | None = None

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index):
        return self._made()[index]

    def __iter__(self):
        return iter(self._made())

    def __repr__(self) -> str:
        return f"SweepPoints({self._count} points)"

    def _made(self) -> list[cirq.ParamResolver]:
        if self._points is None:
            try:
                points = [resolver for sweep in self._sweeps for resolver in sweep]
            except (TypeError, ValueError) as exc:
                raise InvalidOptionError(
                    f"params could not be read as a sweep ({type(exc).__name__}: {exc})"
                ) from None
            for k, point in enumerate(points):
                check_finite(k, point)
            self._points = points
        return self._points


def check_finite(index: int, point: cirq.ParamResolver) -> None:
    """NaN or an infinity in a sweep runs without complaint on a simulator and gives
    meaningless counts: refused before anything is stored."""
    for symbol, value in point.param_dict.items():
        if not _is_finite(value):
            raise InvalidOptionError(
                f"sweep point {index} gives {symbol} the value {value}, which is not a "
                "finite number; give finite values (check the sweep's start, stop and "
                "any division that made them)"
            )


def _is_finite(value: object) -> bool:
    if isinstance(value, sympy.Basic):
        if not value.is_number:  # a symbol or expression, resolved where it runs
            return True
    elif not isinstance(value, numbers.Complex):  # text (another symbol's name)
        return True
    try:
        return cmath.isfinite(complex(value))
    except (TypeError, ValueError, OverflowError):
        return False


def expand(
    labelled: Mapping[str, cirq.Circuit],
    sweeps: Mapping[str, Sequence[cirq.ParamResolver]],
    texts: Mapping[str, str] | None = None,
) -> SweptItems:
    """Items for each circuit and each point of its sweep (circuits without a sweep in
    ``sweeps`` are one item, unchanged). ``texts``: circuits' Cirq JSON by label, where
    written already."""
    circuits: dict[str, cirq.Circuit] = {}
    found: list[cirq.ParamResolver | None] = []
    item_texts: list[str | None] = []
    texts = texts or {}
    for label, circuit in labelled.items():
        points = sweeps.get(label)
        if points is None:
            circuits[label] = circuit
            found.append(None)
            item_texts.append(texts.get(label))
            continue
        for k, resolver in enumerate(points):
            item = point_label(label, k)
            if item in labelled:
                raise InvalidCircuitError(
                    f"the sweep of circuit {label!r} labels its points {label}[0], "
                    f"{label}[1], ...; a circuit is already labelled {item!r}: rename it"
                )
            circuits[item] = circuit
            found.append(resolver)
            item_texts.append(texts.get(label))
    return SweptItems(circuits, found, item_texts if texts else None)


def check_covered(label: str, circuit: cirq.Circuit, points: Sequence[cirq.ParamResolver]) -> None:
    """Every symbol of the circuit has a value at every point of its sweep."""
    names = cirq.parameter_names(circuit)
    for k, resolver in enumerate(points):
        given = {str(key) for key in resolver.param_dict}
        missing = sorted(name for name in names if name not in given)
        if missing:
            raise InvalidCircuitError(
                f"circuit {label!r} has unresolved parameters {', '.join(missing)} at sweep "
                f"point {k} ({dict(resolver.param_dict)}); give them values in params="
            )


def resolver_of(text: str | None) -> cirq.ParamResolver:
    return cirq.ParamResolver() if text is None else cirq.read_json(json_text=text)
