"""The target registry: targets by name, target *kinds* by name, and plug-ins.

- A **target** is an instance (``qnb.register_target("lab", target)``).
- A **kind** makes targets from options: ``qnb.register_target("noisy", "density",
  noise=0.01)``, ``register_target("qpu", "ionq", backend="qpu.aria-1")``. Built-in kinds
  whose code needs an optional extra (``ionq``, ``dask``) load on first use.
- A **plug-in** is a third-party target under the entry-point group ``qnb.targets``
  (``name = "package.module:factory"``; ``factory()`` returns a target or a
  ``cirq.Sampler``). Its name is listed at once, without importing it; it loads on first
  use, in its own try: a broken plug-in is reported (once, with its distribution and
  version) and listed as broken, never fatal. ``QNB_DISABLE_PLUGINS=1`` turns them off.

The built-in targets use the same lazy entries as plug-ins, and so do the targets file's
tables that name a kind (``[targets.cluster]`` with ``kind = "dask"`` and its options).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import logging
import os
import threading
from collections.abc import Callable
from importlib import metadata
from typing import Any

import cirq

from .. import _config
from .._device import DeviceSpec
from .._errors import InvalidOptionError, QnbError, UnknownTargetError
from ._base import Target

logger = logging.getLogger("qnb")

ENTRY_POINT_GROUP = "qnb.targets"


@dataclasses.dataclass
class LazyTarget:
    """A target known by name whose code loads on first use."""

    name: str
    load: Callable[[], object]  # returns a Target or a cirq.Sampler
    origin: str  # "package.module:factory (distribution version)" or "built-in"
    error: str | None = None  # why loading failed, once it has
    #: Found by a scan (a plug-in, a targets-file table): a new scan replaces it.
    scanned: bool = False


@dataclasses.dataclass(frozen=True)
class UnloadedTarget:
    """What ``qnb.targets()`` shows for a target whose code has not loaded (a plug-in
    before first use) or could not load (a broken plug-in): its origin, not its device.
    It answers the fields of a :class:`~qnb.DeviceSpec` that listings read."""

    name: str
    origin: str
    error: str | None = None
    max_qubits: None = None
    max_batch: None = None
    max_shots: None = None
    native_gates: tuple[str, ...] = ()
    qubits: None = None
    connectivity: None = None

    @property
    def loaded(self) -> bool:
        return False

    @property
    def description(self) -> str:
        if self.error is not None:
            return f"broken: {self.origin} could not be loaded: {self.error}"
        return f"not loaded ({self.origin}); loads on first use"

    def summary(self) -> dict:
        return {"name": self.name, "max_qubits": None, "qubits": None, "connectivity": None,
                "native_gates": None, "max_batch": None, "max_shots": None,
                "description": self.description, "loaded": False, "error": self.error}  # fmt: skip


class TargetRegistry:
    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._targets: dict[str, Target] = {}
        self._lazy: dict[str, LazyTarget] = {}
        self._plugins_found = False

    def get(self, name: str) -> Target:
        with self._lock:
            target = self._targets.get(name)
            if target is not None:
                return target
            self._find_plugins()
            lazy = self._lazy.get(name)
            if lazy is None or lazy.error is not None:
                known = ", ".join(self.names())
                if lazy is not None:
                    raise UnknownTargetError(
                        f"target {name!r} ({lazy.origin}) could not be loaded: {lazy.error}"
                    )
                raise UnknownTargetError(
                    f"unknown target {name!r}; known targets: {known} "
                    "(qnb.targets() describes them, qnb.register_target() adds one)"
                )
            return self._load(lazy)

    def _load(self, lazy: LazyTarget) -> Target:
        try:
            made = lazy.load()
            target = as_target(lazy.name, made)
        except Exception as exc:  # a broken plug-in is reported, never fatal
            lazy.error = f"{type(exc).__name__}: {exc}"
            logger.warning("qnb: target %r from %s could not be loaded: %s",
                           lazy.name, lazy.origin, lazy.error)  # fmt: skip
            raise UnknownTargetError(
                f"target {lazy.name!r} ({lazy.origin}) could not be loaded: {lazy.error}"
            ) from None
        self._targets[lazy.name] = target
        del self._lazy[lazy.name]
        return target

    def register(self, name: str, target: Target) -> None:
        if not isinstance(target, Target):
            raise TypeError(f"expected a qnb Target, got {type(target).__name__}")
        with self._lock:
            self._targets[name] = target
            self._lazy.pop(name, None)

    def unregister(self, name: str) -> None:
        with self._lock:
            self._targets.pop(name, None)
            self._lazy.pop(name, None)

    def register_lazy(self, name: str, load: Callable[[], object], *, origin: str) -> None:
        with self._lock:
            if name not in self._targets:
                self._lazy[name] = LazyTarget(name, load, origin)

    def listing(self) -> dict[str, DeviceSpec | UnloadedTarget]:
        """Every target by name: a loaded one's :class:`DeviceSpec`, else what is known
        without loading it (nothing is imported by asking)."""
        with self._lock:
            self._find_plugins()
            shown: dict[str, DeviceSpec | UnloadedTarget] = {
                name: target.device for name, target in self._targets.items()
            }
            for name, lazy in self._lazy.items():
                shown.setdefault(name, UnloadedTarget(name, lazy.origin, lazy.error))
            return shown

    def rescan(self) -> None:
        """Look again for plug-ins and the targets file's tables (installed or edited
        since): entries found by the last scan and not loaded are dropped first."""
        with self._lock:
            self._lazy = {n: lazy for n, lazy in self._lazy.items() if not lazy.scanned}
            self._plugins_found = False
            self._find_plugins()

    def all(self) -> dict[str, Target]:
        """The targets loaded so far (lazy ones are not loaded by asking)."""
        with self._lock:
            return dict(self._targets)

    def names(self) -> list[str]:
        with self._lock:
            self._find_plugins()
            return [*self._targets, *(n for n in self._lazy if n not in self._targets)]

    def lazy(self) -> dict[str, LazyTarget]:
        """Targets known by name and not loaded yet (or broken), e.g. plug-ins."""
        with self._lock:
            self._find_plugins()
            return dict(self._lazy)

    def _find_plugins(self) -> None:
        if self._plugins_found:
            return
        self._plugins_found = True
        self._find_configured()
        if os.environ.get("QNB_DISABLE_PLUGINS", "") not in ("", "0"):
            return
        try:
            found = metadata.entry_points(group=ENTRY_POINT_GROUP)
        except Exception as exc:  # a broken environment must not stop qnb
            logger.warning("qnb: reading the %s entry points failed: %s", ENTRY_POINT_GROUP, exc)
            return
        for entry in found:
            if entry.name in self._targets or entry.name in self._lazy:
                continue
            dist = getattr(entry, "dist", None)
            origin = f"plug-in {entry.value} ({dist.name} {dist.version})" if dist else f"plug-in {entry.value}"
            self._lazy[entry.name] = LazyTarget(entry.name, _plugin_loader(entry), origin, scanned=True)

    def _find_configured(self) -> None:
        """The targets file's tables that name a kind (queue servers, with a ``url``,
        are connected by ``qnb.connect``)."""
        try:
            configured = _config.configured_kinds()
        except QnbError as exc:  # a broken targets file must not stop qnb
            logger.warning("qnb: %s", exc)
            return
        for name, (kind, options) in configured.items():
            if name in self._targets or name in self._lazy:
                continue
            origin = f"kind {kind!r} from {_config.targets_file()}"
            self._lazy[name] = LazyTarget(
                name, functools.partial(make, kind, name, **options), origin, scanned=True
            )


def _plugin_loader(entry: metadata.EntryPoint) -> Callable[[], object]:
    def load() -> object:
        return entry.load()()

    return load


def as_target(name: str, made: object, **options: Any) -> Target:
    """What a plug-in's factory or ``register_target`` was given, as a Target
    (``options`` go to a sampler's target: ``device``, ``max_threads``)."""
    if isinstance(made, Target) and not options:
        return made
    if isinstance(made, cirq.Sampler):
        samplers = importlib.import_module("qnb._targets._sampler")
        return samplers.SamplerTarget(name, made, **options)
    if isinstance(made, Target):
        raise InvalidOptionError(
            f"options ({', '.join(options)}) go with a kind of target (a string such as "
            "'density') or a cirq.Sampler, not with a target"
        )
    raise InvalidOptionError(
        f"target {name!r} must be a qnb Target or a cirq.Sampler, got {type(made).__name__}"
    )


# -- kinds -----------------------------------------------------------------------------------

#: kind -> "module:factory" (imported on first use: optional extras) or a factory.
#: ``factory(name, **options) -> Target``.
_KINDS: dict[str, Any] = {}


def register_kind(kind: str, factory: Callable[..., Target] | str) -> None:
    """Add a kind of target (``"module:callable"`` defers its import to first use)."""
    _KINDS[kind] = factory


def kinds() -> list[str]:
    return sorted(_KINDS)


def make(kind: str, name: str, **options: Any) -> Target:
    factory = _KINDS.get(kind)
    if factory is None:
        raise UnknownTargetError(f"unknown target kind {kind!r}; kinds: {', '.join(kinds())}")
    if isinstance(factory, str):
        module, _, attribute = factory.partition(":")
        factory = getattr(import_extra(module, f"target kind {kind!r}"), attribute)
    return factory(name, **options)


def import_extra(module: str, what: str) -> Any:
    """Import a module of an optional extra (``qnb._targets._dask`` is ``qnb[dask]``),
    saying which to install when it is missing."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        extra = module.rpartition("._")[2]
        raise InvalidOptionError(
            f"{what} needs an optional extra: pip install 'qnb[{extra}]' ({exc})"
        ) from None


def on_executor(target: Target, url: str) -> Target:
    """A copy of ``target`` whose circuits run where ``url`` says (``dask://HOST:PORT``:
    a Dask cluster), for ``qnb serve --executor``."""
    scheme = url.partition("://")[0]
    if scheme != "dask":
        raise InvalidOptionError(f"unknown executor {url!r}; use dask://HOST:PORT (a Dask scheduler)")
    dask = import_extra("qnb._targets._dask", f"executor {url!r}")
    return dask.on_cluster(target, dask.DaskExecutor(url))


#: Built-in kinds that need an optional extra (the IonQ kind is registered below too).
register_kind("dask", "qnb._targets._dask:DaskTarget")

registry = TargetRegistry()


def register_target(name: str, target: object, **options: Any) -> Target:
    """Add a target under ``name``: a :class:`Target`, a ``cirq.Sampler``, or a kind
    with its options.

    ``qnb.register_target("noisy", "density", noise=0.01)`` adds a density-matrix
    simulator with depolarizing noise; ``"emulator"`` takes the emulator's options
    (``n_qubits``, ``noise``, ``seconds_per_shot``); ``"dask"`` runs a simulator on a
    Dask cluster (``address="tcp://HOST:8786"``, ``engine="qsim"``, ``noise``; needs
    ``qnb[dask]``). ``qnb.register_target("engine", sampler)`` runs jobs through any
    ``cirq.Sampler`` (options: ``device``, a ``cirq.Device`` when the sampler names
    none; ``max_threads``); such jobs have no job id and are not followed after a restart.
    """
    if not isinstance(name, str) or not name:
        raise InvalidOptionError(f"a target's name is a non-empty string, got {name!r}")
    if isinstance(target, str):
        made = make(target, name, **options)
    else:
        made = as_target(name, target, **options)
    registry.register(name, made)
    return made
register_kind("ionq", "qnb._targets._ionq:IonQTarget")  # needs the extra qnb[ionq] (cirq-ionq)
