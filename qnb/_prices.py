"""What a job costs, before it runs: one dated price table per vendor and device.

Every vendor's list price is written in the same few terms (:class:`Price`): a fixed
part per circuit (a Braket task), a part per circuit-shot, parts per gate-shot by gate
kind (IonQ) or per preparation/measurement-shot (Quantinuum), a minimum per circuit
(IonQ's minimum per program), and a part per second of estimated usage (IBM Quantum).
A target's ``price = {...}`` (targets file or ``qnb.register_target``) overrides the
table's terms for that target; ``budget = ...`` caps what its jobs may add up to.

Targets are read by duck typing (``vendor``, ``local``, and each vendor target's own
name of its device: ``backend``, ``device_arn``, ``target_name``): this module sits
with the vocabulary and imports no target. No network call is made: azure-quantum
(3.13) no longer ships a local estimate, Braket's tracker downloads AWS's price list,
so the figures are ours, dated, with their sources.
"""

from __future__ import annotations

import dataclasses
import math
import re
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from ._errors import CostLimitError, InvalidOptionError

if TYPE_CHECKING:  # only annotations: listing targets (qnb targets) needs no Cirq
    from ._estimate import CircuitFeatures

#: When the figures below were collected, and where from (public list prices).
PRICES_TAKEN = "2026-12-05"
SOURCES = {
    "IonQ": "IonQ's per-gate-shot prices as Azure Quantum publishes them (learn.microsoft.com/"
            "azure/quantum/pricing, dated 2025-02-26): IonQ's own public per-gate-shot figures",
    "Amazon Braket": "aws.amazon.com/braket/pricing (QPUs: per task + per shot; on-demand "
                     "simulators: per minute, billed with a 3 s minimum per task)",
    "IBM Quantum": "ibm.com/quantum/pricing (per second of usage by plan)",
    "Azure Quantum": "learn.microsoft.com/azure/quantum/pricing, dated 2025-02-26 (IonQ's AQT "
                     "and Quantinuum's HQC formulas)",
}  # fmt: skip

#: IonQ bills a gate on N >= 3 qubits as 6 * (N - 2) two-qubit gates; CircuitFeatures
#: counts such gates without their size, so each is taken as a three-qubit gate.
TWO_QUBIT_GATES_PER_MULTI = 6


@dataclasses.dataclass(frozen=True)
class Price:
    """One device's list price in the terms its vendor bills by (unused terms are 0).

    The cost of a job is, per circuit (item), ``max(minimum, per_task + shots * (per_shot
    + one-qubit gates * one_qubit_gate_shot + two-qubit gates * two_qubit_gate_shot +
    (preparations + measurements) * spam_shot))``, plus ``per_second`` times the job's
    estimated usage seconds (:func:`usage_seconds`)."""

    per_task: float = 0.0
    per_shot: float = 0.0
    one_qubit_gate_shot: float = 0.0
    two_qubit_gate_shot: float = 0.0
    spam_shot: float = 0.0
    minimum: float = 0.0
    per_second: float = 0.0
    currency: str = "USD"
    #: Circuits past (qubits, gates) are not priced: a managed simulator's minutes are
    #: known only for circuits small enough to finish within its billed minimum.
    within: tuple[int, int] | None = dataclasses.field(default=None, compare=False)
    note: str = dataclasses.field(default="", compare=False)

    def circuit_cost(self, features: CircuitFeatures, shots: int) -> float:
        two_qubit = features.two_qubit_gates + TWO_QUBIT_GATES_PER_MULTI * features.multi_qubit_gates
        per_shot = (
            self.per_shot
            + features.one_qubit_gates * self.one_qubit_gate_shot
            + two_qubit * self.two_qubit_gate_shot
            + spam_operations(features) * self.spam_shot
        )
        return max(self.minimum, self.per_task + shots * per_shot)


def spam_operations(features: CircuitFeatures) -> int:
    """Quantinuum's N_m: a preparation per qubit and each measurement. A measurement of
    several qubits is one operation in CircuitFeatures, so measured circuits count at
    least one per qubit (an upper bound where only some qubits are measured)."""
    measured = max(features.measurements, features.qubits) if features.measurements else 0
    return features.qubits + measured


#: The keys of ``price = {...}``: every term of :class:`Price` but its limits and note.
PRICE_KEYS = tuple(f.name for f in dataclasses.fields(Price) if f.name not in ("within", "note"))

_IONQ_QPU = Price(one_qubit_gate_shot=0.000220, two_qubit_gate_shot=0.000975, minimum=97.50,
                  note="IonQ per gate-shot, minimum $97.50 per circuit with error mitigation on")  # fmt: skip
_FREE = Price(note="free")
#: Braket bills its managed simulators per minute, at least 3 s per task.
_BRAKET_MINIMUM_SECONDS = 3.0


def _braket_simulator(per_minute: float, within: tuple[int, int]) -> Price:
    return Price(per_task=per_minute * _BRAKET_MINIMUM_SECONDS / 60, within=within,
                 note=f"${per_minute}/min, its 3 s minimum per task")  # fmt: skip


def _hqc(currency: str) -> Price:
    # HQC = 5 + C (N1q + 10 N2q + 5 Nm) / 5000: in Quantinuum's own unit (its USD price
    # per HQC is by contract).
    return Price(per_task=5.0, one_qubit_gate_shot=1 / 5000, two_qubit_gate_shot=10 / 5000,
                 spam_shot=5 / 5000, currency=currency, note="Quantinuum's HQC formula")  # fmt: skip


#: (vendor, device) -> its list price. Devices are named as :func:`device_of` names them.
PRICES: dict[tuple[str, str], Price] = {
    ("IonQ", "simulator"): _FREE,
    ("IonQ", "qpu.aria-1"): _IONQ_QPU,
    ("IonQ", "qpu.aria-2"): _IONQ_QPU,
    ("IonQ", "qpu.forte-1"): _IONQ_QPU,
    ("Amazon Braket", "ionq/aria"): Price(per_task=0.30, per_shot=0.03),
    ("Amazon Braket", "ionq/forte"): Price(per_task=0.30, per_shot=0.08),
    ("Amazon Braket", "iqm/garnet"): Price(per_task=0.30, per_shot=0.00145),
    ("Amazon Braket", "rigetti/ankaa"): Price(per_task=0.30, per_shot=0.0009),
    ("Amazon Braket", "quera/aquila"): Price(per_task=0.30, per_shot=0.01),
    # A circuit this small simulates well within the 3 s billed minimum.
    ("Amazon Braket", "amazon/sv1"): _braket_simulator(0.075, (20, 1000)),
    ("Amazon Braket", "amazon/dm1"): _braket_simulator(0.075, (10, 1000)),
    ("Azure Quantum", "ionq.simulator"): _FREE,
    ("Azure Quantum", "ionq.qpu.aria-1"): _IONQ_QPU,
    ("Azure Quantum", "ionq.qpu.aria-2"): _IONQ_QPU,
    ("Azure Quantum", "ionq.qpu.forte"): _IONQ_QPU,
    ("Azure Quantum", "ionq.qpu.forte-1"): _IONQ_QPU,
    ("Azure Quantum", "quantinuum.qpu"): _hqc("HQC"),
    ("Azure Quantum", "quantinuum.emulator"): _hqc("eHQC"),
    ("Azure Quantum", "quantinuum.syntax-checker"): Price(currency="HQC", note="free"),
}  # fmt: skip

#: IBM Quantum prices usage seconds by plan (``plan = "..."``; premium: by contract).
IBM_PLANS: dict[str, Price | None] = {
    "pay-as-you-go": Price(per_second=96 / 60, note="$96 per minute of usage"),
    "flex": Price(per_second=72 / 60, note="$72 per minute of usage"),
    "open": Price(note="free, within its monthly minutes"),
    "premium": None,
}
IBM_DEFAULT_PLAN = "pay-as-you-go"
#: IBM's usage of a job (the seconds billed): a fixed part per job plus, per shot, the
#: repetition delay (250 us by default) and the circuit (~0.5 us per layer). Calibrated on
#: IBM's example: a Bell circuit, 4,096 shots, 4.1 usage seconds (this rule: 4.0).
IBM_JOB_SECONDS, IBM_SHOT_SECONDS, IBM_LAYER_SECONDS = 3.0, 250e-6, 0.5e-6


def usage_seconds(features: Sequence[CircuitFeatures], shots: int) -> float:
    """IBM Quantum usage seconds of a job of these circuits (see the constants above)."""
    per_shots = sum(IBM_SHOT_SECONDS + f.depth * IBM_LAYER_SECONDS for f in features)
    return IBM_JOB_SECONDS + shots * per_shots


@dataclasses.dataclass(frozen=True)
class Cost:
    """A job's estimated cost: ``amount`` in ``currency`` (0.0 and None on a local
    target; None and a reason in ``basis`` where no price is known)."""

    amount: float | None
    currency: str | None
    basis: str


# -- a target's own price, budget and plan -----------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PriceSettings:
    """What a target's configuration says of its cost: ``price`` terms over the table's,
    a ``budget`` for all its jobs, an IBM ``plan``; ``where`` says where it was set."""

    price: Mapping[str, float | str] = dataclasses.field(default_factory=dict)
    budget: float | None = None
    plan: str | None = None
    where: str = ""


#: The options of a target that are about its cost, not given to its kind's factory.
COST_OPTIONS = ("price", "budget", "plan")
_settings: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def split_options(
    options: dict, *, target: str, where: str, kind: str | None = None
) -> tuple[dict, PriceSettings | None]:
    """``options`` without ``price``/``budget``/``plan``, and those checked as settings
    (None when there are none). ``where``: where they were written, for the message."""
    rest = {key: value for key, value in options.items() if key not in COST_OPTIONS}
    if len(rest) == len(options):
        return rest, None
    price, budget, plan = (options.get(key) for key in COST_OPTIONS)
    return rest, check_settings(price, budget, plan, target=target, where=where, kind=kind)


def check_settings(
    price: object, budget: object, plan: object, *, target: str, where: str, kind: str | None = None
) -> PriceSettings:
    """Bad values are refused naming the target, where they were written and what to
    write instead. ``kind``: the target's kind when known (a plan is IBM's only)."""
    about = f"target {target!r} {where}"
    if price is not None:
        _check_price(price, about)
    if budget is not None and not _is_amount(budget):
        raise InvalidOptionError(
            f"budget for {about} must be a number from 0 (in the target's currency), got {budget!r}; "
            "write budget = 100.0, or leave it out for no budget"
        )
    if plan is not None:
        if kind not in (None, "ibm"):
            raise InvalidOptionError(f"plan applies to IBM Quantum targets (kind 'ibm') only: {about}")
        if not isinstance(plan, str) or plan not in IBM_PLANS:
            raise InvalidOptionError(f"unknown plan {plan!r} for {about}; plans: {', '.join(IBM_PLANS)}")
    return PriceSettings(dict(price or {}), None if budget is None else float(budget), plan, where)


def _check_price(price: object, about: str) -> None:
    if not isinstance(price, Mapping):
        raise InvalidOptionError(
            f"price for {about} must be a table such as {{per_task = 0.3, per_shot = 0.03}}, got {price!r}"
        )
    for key, value in price.items():
        if key not in PRICE_KEYS:
            raise InvalidOptionError(f"price for {about} has an unknown key {key!r}; the keys are {', '.join(PRICE_KEYS)}")
        if key == "currency":
            if not isinstance(value, str) or not value.strip():
                raise InvalidOptionError(f"price.currency for {about} must be a name such as 'USD', got {value!r}")
        elif not _is_amount(value):
            raise InvalidOptionError(f"price.{key} for {about} must be a number from 0, got {value!r}")


def _is_amount(value: object) -> bool:
    return (not isinstance(value, bool) and isinstance(value, (int, float))
            and math.isfinite(value) and value >= 0)  # fmt: skip


def configure(target: object, settings: PriceSettings | None) -> None:
    """Keep ``settings`` for ``target`` (None: the table's price, no budget)."""
    if settings is None:
        try:
            _settings.pop(target, None)
        except TypeError:  # a target that cannot be weakly referenced: never configured
            pass
        return
    if settings.plan is not None and getattr(target, "vendor", None) not in (None, "IBM Quantum"):
        raise InvalidOptionError(f"plan applies to IBM Quantum targets only: target "
                                 f"{getattr(target, 'name', '?')!r} {settings.where}")  # fmt: skip
    try:
        _settings[target] = settings
    except TypeError:  # an unhashable target (a dataclass with eq): nothing to key it by
        raise InvalidOptionError(
            f"target {getattr(target, 'name', '?')!r} cannot keep price, budget or plan: its class "
            f"{type(target).__name__} is not hashable"
        ) from None


def settings_of(target: object) -> PriceSettings:
    try:
        return _settings.get(target) or PriceSettings()
    except TypeError:  # a target that cannot be weakly referenced: never configured
        return PriceSettings()


# -- the cost of a job -----------------------------------------------------------------------


def device_of(target: object) -> tuple[str | None, str | None]:
    """``(vendor, device)`` as :data:`PRICES` names them; device None if it cannot be read."""
    vendor = getattr(target, "vendor", None)
    if vendor == "IonQ":
        return vendor, _text(getattr(target, "backend", None))
    if vendor == "Amazon Braket":
        arn = _text(getattr(target, "device_arn", None)) or ""
        found = re.search(r"device/(qpu|quantum-simulator)/([^/]+)/([^/]+)$", arn)
        if not found:
            return vendor, arn or None
        # A QPU by family (Aria-1 and Aria-2 bill alike), a simulator by name.
        name = re.sub(r"-\d+$", "", found[3].lower()) if found[1] == "qpu" else found[3].lower()
        return vendor, f"{found[2].lower()}/{name}"
    if vendor == "Azure Quantum":
        name = _text(getattr(target, "target_name", None)) or ""
        if name.startswith("quantinuum."):
            kind = "qpu" if ".qpu." in name else "syntax-checker" if name.endswith("sc") else "emulator"
            return vendor, f"quantinuum.{kind}"
        return vendor, name or None
    if vendor == "IBM Quantum":
        backend = getattr(target, "backend", None)
        return vendor, _text(getattr(backend, "name", backend))
    return vendor, None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def price_of(target: object, features: Sequence[CircuitFeatures]) -> tuple[Price | None, str]:
    """The target's price (the table's terms, its ``price = {...}`` over them) and one
    line saying where it comes from; None and why when no price is known."""
    name = getattr(target, "name", "?")
    vendor, device = device_of(target)
    settings = settings_of(target)
    if vendor == "IBM Quantum":
        plan = settings.plan or IBM_DEFAULT_PLAN
        listed, source = IBM_PLANS.get(plan), f"IBM Quantum {plan} plan" + ("" if settings.plan else " (the default)")
    else:
        listed = PRICES.get((vendor, device)) if vendor else None
        source = f"{vendor} {device}"
    if listed is not None and listed.within and not _within(listed.within, features):
        source += f" for circuits over {listed.within[0]} qubits or {listed.within[1]:,} gates"
        listed = None
    if settings.price:
        terms = {**dataclasses.asdict(listed or Price()), **settings.price}
        terms.pop("within"), terms.pop("note")
        return Price(**terms), f"{source}: price set {settings.where}"
    if listed is None:
        terms = "per_second = ..." if vendor == "IBM Quantum" else "per_task = ..., per_shot = ..."
        return None, (
            f"no price known for {source if vendor else f'target {name!r}'}; set price = "
            f"{{{terms}}} for target {name!r} in the targets file (or qnb.register_target(..., price={{...}}))"
        )
    note = f" ({listed.note})" if listed.note else ""
    return listed, f"{source}: list price, table of {PRICES_TAKEN}{note}"


def _within(limit: tuple[int, int], features: Sequence[CircuitFeatures]) -> bool:
    return all(f.qubits <= limit[0] and f.gates <= limit[1] for f in features)


def estimate_cost(target: object, features: Sequence[CircuitFeatures], shots: int) -> Cost:
    """The cost of a job of these circuits on ``target``, checking nothing."""
    if getattr(target, "local", False) and not settings_of(target).price:
        vendor = getattr(target, "vendor", None)
        return Cost(0.0, None, f"{vendor}'s local mode: no cost" if vendor else "local: no cost")
    price, basis = price_of(target, features)
    if price is None:
        return Cost(None, None, basis)
    amount = sum(price.circuit_cost(f, shots) for f in features)
    if price.per_second:
        seconds = usage_seconds(features, shots)
        amount += price.per_second * seconds
        basis += f"; ~{seconds:,.0f} usage seconds"
    return Cost(round(amount, 6), price.currency, basis)


def cost_at_submit(
    target: object,
    features: Sequence[CircuitFeatures],
    shots: int,
    *,
    max_cost: float | None,
    spent: Callable[[], Mapping[str | None, float]] | None,
) -> Cost:
    """The cost of a job of these circuits on ``target``; over ``max_cost`` or the
    target's budget (``spent()`` so far plus this), a ``CostLimitError``. Where no price
    is known and a limit is set, a ``CostLimitError`` too: a limit is never guessed past."""
    name = getattr(target, "name", "?")
    if getattr(target, "priced_by_server", False) and not settings_of(target).price:
        # A queue server prices its own device, and checks max_cost and its budget when
        # the job reaches it (the submit is refused there, nothing kept).
        return Cost(None, None, f"priced by the queue server of target {name!r} at submit")
    cost = estimate_cost(target, features, shots)
    if max_cost is not None:
        _check_ceiling(cost, max_cost, name)
    settings = settings_of(target)
    if settings.budget is not None and spent is not None:
        _check_budget(cost, settings, spent, name)
    return cost


def _check_ceiling(cost: Cost, max_cost: float, name: str) -> None:
    if cost.amount is None:
        raise CostLimitError(
            f"max_cost={max_cost:g} is set and the cost of this job on target {name!r} is unknown: "
            f"{cost.basis}; or submit without max_cost"
        )
    if cost.amount > max_cost:
        raise CostLimitError(
            f"this job's estimated cost on target {name!r} is {_money(cost.amount, cost.currency)}, above "
            f"max_cost={max_cost:g} ({cost.basis}); raise max_cost, or submit fewer shots or circuits"
        )


def _check_budget(cost: Cost, settings: PriceSettings, spent: Callable[[], Mapping], name: str) -> None:
    budget = f"budget = {settings.budget:g} for target {name!r} ({settings.where})"
    if cost.amount is None:
        raise CostLimitError(f"{budget} and the cost of this job is unknown: {cost.basis}")
    so_far = float(spent().get(cost.currency, 0.0) or 0.0)
    if so_far + cost.amount > settings.budget:
        raise CostLimitError(
            f"{budget}: {_money(so_far, cost.currency)} spent by stored jobs, this job "
            f"{_money(cost.amount, cost.currency)} ({cost.basis}); raise the budget there, or submit "
            "fewer shots or circuits"
        )


def _money(amount: float, currency: str | None) -> str:
    """``$97.50``, ``$0.0045``, ``12.3 HQC``: small amounts keep their figures."""
    figure = f"{amount:,.2f}" if amount >= 0.1 or amount == 0 else f"{amount:.2g}"
    return f"${figure}" if currency == "USD" else f"{figure} {currency or ''}".strip()
