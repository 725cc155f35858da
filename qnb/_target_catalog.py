"""What targets there are, known without loading any (and without importing Cirq): the
built-in targets' facts, the plug-ins under the ``qnb.targets`` entry points and the
targets file's tables that name a kind.

``qnb targets`` lists from here alone (a command that prints a table should not pay
Cirq's two seconds). The registry (``_targets/_registry.py``) builds its lazy entries
from the same scans, and ``_targets/_simulators.py`` builds the built-in targets from
the same facts, so the command and ``qnb.targets()`` cannot disagree.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Iterator
from importlib import metadata

from . import _config, _prices
from ._errors import InvalidOptionError, QnbError, UnknownTargetError

logger = logging.getLogger("qnb")

ENTRY_POINT_GROUP = "qnb.targets"
#: Circuits a job may hold on a target that does not say otherwise.
DEFAULT_MAX_BATCH = 300
#: Shots an item may ask for on a target that does not say otherwise.
DEFAULT_MAX_SHOTS = 1_000_000
#: The built-in device emulator's defaults.
EMULATOR_QUBITS = 6
EMULATOR_NOISE = 0.005
EMULATOR_MAX_SHOTS = 100_000


def emulator_description(n_qubits: int, noise: float) -> str:
    return f"device emulator: {n_qubits} qubits in a line, depolarizing noise {noise}"


@dataclasses.dataclass(frozen=True)
class BuiltIn:
    """A built-in target's public facts (its :class:`~qnb.DeviceSpec` holds the same)."""

    name: str
    engine: str
    max_qubits: int
    description: str
    max_shots: int = DEFAULT_MAX_SHOTS
    max_batch: int = DEFAULT_MAX_BATCH


BUILT_IN: dict[str, BuiltIn] = {
    "sim": BuiltIn("sim", "qsim", 30, "qsimcirq state vector (fast)"),
    "cirq": BuiltIn("cirq", "cirq", 26, "cirq.Simulator state vector"),
    "density": BuiltIn("density", "density", 12, "cirq.DensityMatrixSimulator, noiseless"),
    "emulator": BuiltIn(
        "emulator", "density", EMULATOR_QUBITS,
        emulator_description(EMULATOR_QUBITS, EMULATOR_NOISE), max_shots=EMULATOR_MAX_SHOTS,
    ),
}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class UnloadedTarget:
    """What ``qnb.targets()`` shows for a target whose code has not loaded (a plug-in
    before first use), is loading, or is broken (could not load, or its device cannot
    be read): its origin, not its device. It answers the fields of a
    :class:`~qnb.DeviceSpec` that listings read."""

    name: str
    origin: str
    error: str | None = None
    max_qubits: None = None
    max_batch: None = None
    max_shots: None = None
    native_gates: tuple[str, ...] = ()
    qubits: None = None
    connectivity: None = None
    loading: bool = False
    #: What went wrong, for the description: loading, or reading the loaded target's device.
    problem: str = "could not be loaded"

    @property
    def loaded(self) -> bool:
        return False

    @property
    def description(self) -> str:
        if self.error is not None:
            return f"broken: {self.origin} {self.problem}: {self.error}"
        if self.loading:
            return f"loading ({self.origin})"
        return f"not loaded ({self.origin}); loads on first use"

    def summary(self) -> dict:
        return {"name": self.name, "max_qubits": None, "qubits": None, "connectivity": None,
                "native_gates": None, "max_batch": None, "max_shots": None,
                "description": self.description, "loaded": False, "error": self.error}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Configured:
    """A targets-file table that names a kind: its options without the cost settings,
    and those settings checked (or ``error``, why the table is refused)."""

    name: str
    kind: str
    origin: str
    options: dict
    settings: _prices.PriceSettings | None = None
    error: str | None = None


@dataclasses.dataclass(frozen=True)
class PlugIn:
    name: str
    origin: str
    entry: metadata.EntryPoint

    def load(self) -> object:
        """The target (or ``cirq.Sampler``) the plug-in's factory makes."""
        return self.entry.load()()


def configured() -> Iterator[Configured]:
    """The targets file's tables that name a kind (queue servers, with a ``url``, are
    connected by ``qnb.connect``); a broken targets file is said, never fatal."""
    try:
        tables = _config.configured_kinds()
    except QnbError as exc:
        logger.warning("qnb: %s", exc)
        return
    path = _config.targets_file()
    for name, (kind, options) in tables.items():
        origin = f"kind {kind!r} from {path}"
        try:
            options, settings = _prices.split_options(options, target=name, where=f"in {path}", kind=kind)
        except InvalidOptionError as exc:  # listed as broken; asking for it says why
            yield Configured(name, kind, origin, {}, error=str(exc))
            continue
        yield Configured(name, kind, origin, options, settings)


def plugins() -> Iterator[PlugIn]:
    """The ``qnb.targets`` entry points (none when ``QNB_DISABLE_PLUGINS`` is set)."""
    if os.environ.get("QNB_DISABLE_PLUGINS", "") not in ("", "0"):
        return
    try:
        found = metadata.entry_points(group=ENTRY_POINT_GROUP)
    except Exception as exc:  # a broken environment must not stop qnb
        logger.warning("qnb: reading the %s entry points failed: %s", ENTRY_POINT_GROUP, exc)
        return
    for entry in found:
        dist = getattr(entry, "dist", None)
        origin = f"plug-in {entry.value} ({dist.name} {dist.version})" if dist else f"plug-in {entry.value}"
        yield PlugIn(entry.name, origin, entry)


def scanned(taken: Callable[[str], bool]) -> Iterator[Configured | PlugIn]:
    """The targets file's kind tables, then the plug-ins, each name once and none that
    ``taken`` says is already known (a built-in, a registered target)."""
    seen: set[str] = set()
    for found in (*configured(), *plugins()):
        if found.name not in seen and not taken(found.name):
            seen.add(found.name)
            yield found


def listing() -> dict[str, BuiltIn | UnloadedTarget]:
    """What a fresh process's ``qnb.targets()`` lists, read without loading anything."""
    shown: dict[str, BuiltIn | UnloadedTarget] = dict(BUILT_IN)
    for found in scanned(lambda name: name in BUILT_IN):
        error = found.error if isinstance(found, Configured) else None
        shown[found.name] = UnloadedTarget(found.name, found.origin, error)
    return shown


def unknown_target(name: str, known: list[str]) -> UnknownTargetError:
    """The error for a target name nobody knows, naming those that are known."""
    return UnknownTargetError(
        f"unknown target {name!r}; known targets: {', '.join(known)} "
        "(qnb.targets() describes them, qnb.register_target() adds one)"
    )
