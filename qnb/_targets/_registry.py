"""The target registry: targets by name, target *kinds* by name, and plug-ins.

- A **target** is an instance (``qnb.register_target("lab", target)``).
- A **kind** makes targets from options: ``qnb.register_target("noisy", "density",
  noise=0.01)``, ``register_target("qpu", "ionq", backend="qpu.aria-1")``. Built-in kinds
  whose code needs an optional extra (``ionq``, ``dask``) load on first use.
- A **plug-in** is a third-party target under the entry-point group ``qnb.targets``
  (``name = "package.module:factory"``; ``factory()`` returns a target or a
  ``cirq.Sampler``). Its name is listed at once, without importing it; it loads on first
  use, on a thread of its own: a broken plug-in (an exception, even ``sys.exit()``) is
  reported (once, with its distribution and version) and listed as broken, never fatal;
  one that hangs holds up only those who asked for it, and them only until
  ``$QNB_TARGET_LOAD_TIMEOUT`` (60 s). ``QNB_DISABLE_PLUGINS=1`` turns them off.

Options whose names say they are secrets (``api_key``, ``token``, ...) reach a kind's
factory as :class:`~qnb._secrets.Secret`: text whose ``repr`` is masked.

The built-in targets use the same lazy entries as plug-ins, and so do the targets file's
tables that name a kind (``[targets.cluster]`` with ``kind = "dask"`` and its options).

A target's cost options (``price = {...}``, ``budget = ...``, an IBM ``plan``) are not
its kind's: they are checked when the table is read or the target registered (a bad one
refuses the target, naming where it was written) and kept with the target for
:mod:`qnb._prices`.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any, NoReturn

import cirq

from .. import _config, _prices, _secrets, _target_catalog
from .._device import DeviceSpec
from .._errors import InvalidOptionError, QnbError, UnknownTargetError
from .._target_catalog import UnloadedTarget
from ._base import Target

logger = logging.getLogger("qnb")


#: How long a caller waits for a plug-in (or a targets-file table's kind) to load:
#: ``$QNB_TARGET_LOAD_TIMEOUT`` seconds. Longer than a vendor kind's own call deadline
#: (IonQ's is 30 s), so that its clearer error comes first.
DEFAULT_LOAD_TIMEOUT = 60.0


def load_timeout() -> float:
    text = os.environ.get("QNB_TARGET_LOAD_TIMEOUT", "")
    if not text:
        return DEFAULT_LOAD_TIMEOUT
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not (0 < seconds < float("inf")):
        logger.warning("qnb: QNB_TARGET_LOAD_TIMEOUT=%r is not a number of seconds; "
                       "using %g", text, DEFAULT_LOAD_TIMEOUT)  # fmt: skip
        return DEFAULT_LOAD_TIMEOUT
    return seconds


class Loading:
    """One load of a lazy target, on a daemon thread of its own (a factory that hangs
    holds that thread, nobody else). Everyone who wants the target waits for this one
    load, until the same deadline."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self.done = threading.Event()
        self.target: Target | None = None
        self.error: str | None = None

    def wait(self) -> bool:
        return self.done.wait(max(0.0, self.deadline - time.monotonic()))


@dataclasses.dataclass
class LazyTarget:
    """A target known by name whose code loads on first use."""

    name: str
    load: Callable[[], object]  # returns a Target or a cirq.Sampler
    origin: str  # "package.module:factory (distribution version)" or "built-in"
    error: str | None = None  # why loading failed, once it has
    #: Found by a scan (a plug-in, a targets-file table): a new scan replaces it.
    scanned: bool = False
    loading: Loading | None = dataclasses.field(default=None, repr=False)
    #: Its configuration was refused before loading (``error`` says why and what to
    #: write): asking for it raises that as an InvalidOptionError.
    refused: bool = False

    @property
    def in_flight(self) -> bool:
        return self.loading is not None and not self.loading.done.is_set()


class TargetRegistry:
    def __init__(self) -> None:
        # Guards the tables below and is held only to read or change them: never while
        # a target's code loads (a plug-in that hangs would stop every other caller).
        self._lock = threading.RLock()
        self._targets: dict[str, Target] = {}
        self._lazy: dict[str, LazyTarget] = {}
        self._origins: dict[str, str] = {}  # loaded targets that were lazy: where from
        self._device_warned: set[str] = set()
        self._plugins_found = False

    def get(self, name: str) -> Target:
        """The target ``name``, loading it first if it is lazy (one load per target,
        however many ask; other targets are not held up by it)."""
        with self._lock:
            target = self._targets.get(name)
            if target is not None:
                return target
            self._find_plugins()
            lazy = self._lazy.get(name)
            if lazy is None:
                raise _target_catalog.unknown_target(name, self.names())
            if lazy.error is not None:
                raise InvalidOptionError(lazy.error) if lazy.refused else _load_error(lazy, lazy.error)
            loading = lazy.loading or self._start_loading(lazy)
        return self._wait(lazy, loading)

    def _start_loading(self, lazy: LazyTarget) -> Loading:
        loading = lazy.loading = Loading(load_timeout())
        threading.Thread(
            target=self._load, args=(lazy, loading), name=f"qnb-load-{lazy.name}", daemon=True
        ).start()
        return loading

    def _load(self, lazy: LazyTarget, loading: Loading) -> None:
        """The loading thread: the factory's outcome, whatever it is, becomes the
        target or the target's error."""
        target, error = None, None
        try:
            target = as_target(lazy.name, lazy.load())
        except BaseException as exc:  # noqa: BLE001 - a plug-in's sys.exit() is its own error
            error = f"{type(exc).__name__}: {exc}"
        with self._lock:
            current = self._lazy.get(lazy.name) is lazy  # not replaced while it loaded
            if target is not None and current:
                self._targets[lazy.name] = target
                self._origins[lazy.name] = lazy.origin
                del self._lazy[lazy.name]
            lazy.error = error
            loading.target, loading.error = target, error
            loading.done.set()
        if error is not None:  # a broken plug-in is reported (once: it is not loaded again)
            logger.warning("qnb: target %r from %s could not be loaded: %s",
                           lazy.name, lazy.origin, error)  # fmt: skip

    def _wait(self, lazy: LazyTarget, loading: Loading) -> Target:
        if not loading.wait():
            with self._lock:
                if not loading.done.is_set():
                    self._timed_out(lazy, loading)
        if loading.error is not None:
            raise _load_error(lazy, loading.error)
        assert loading.target is not None
        return loading.target

    def _timed_out(self, lazy: LazyTarget, loading: Loading) -> NoReturn:
        """Past the deadline: the target is broken for everyone from now on (no new
        waits); should its load still finish, it is usable then."""
        error = (
            f"it did not finish loading within {loading.timeout:g} s (it may hang; it goes "
            "on loading in the background and is used if it ever finishes; "
            "$QNB_TARGET_LOAD_TIMEOUT sets the limit in seconds)"
        )
        if lazy.error is None:
            lazy.error = error
            logger.warning("qnb: target %r from %s: %s", lazy.name, lazy.origin, error)
        raise _load_error(lazy, error)

    def register(self, name: str, target: Target) -> None:
        if not isinstance(target, Target):
            raise TypeError(f"expected a qnb Target, got {type(target).__name__}")
        with self._lock:
            self._targets[name] = target
            self._lazy.pop(name, None)
            self._origins.pop(name, None)
            self._device_warned.discard(name)

    def unregister(self, name: str) -> None:
        with self._lock:
            self._targets.pop(name, None)
            self._lazy.pop(name, None)
            self._origins.pop(name, None)
            self._device_warned.discard(name)

    def register_lazy(self, name: str, load: Callable[[], object], *, origin: str) -> None:
        with self._lock:
            if name not in self._targets:
                self._lazy[name] = LazyTarget(name, load, origin)

    def listing(self) -> dict[str, DeviceSpec | UnloadedTarget]:
        """Every target by name: a loaded one's :class:`DeviceSpec`, else what is known
        without loading it (nothing is imported by asking, nothing waits for a load)."""
        with self._lock:
            self._find_plugins()
            loaded = dict(self._targets)
            lazies = dict(self._lazy)
        shown = {name: self._device_of(name, target) for name, target in loaded.items()}
        for name, lazy in lazies.items():
            shown.setdefault(name, UnloadedTarget(name, lazy.origin, lazy.error, loading=lazy.in_flight))
        return shown

    def _device_of(self, name: str, target: Target) -> DeviceSpec | UnloadedTarget:
        """A target's device; one whose ``device`` raises is listed as broken (and said
        once), never stopping the listing of the others."""
        try:
            return target.device
        except Exception as exc:  # noqa: BLE001 - a plug-in's bug, shown as its state
            error = f"{type(exc).__name__}: {exc}"
        origin = self._origins.get(name) or f"target {type(target).__module__}.{type(target).__qualname__}"
        if name not in self._device_warned:
            self._device_warned.add(name)
            logger.warning("qnb: the device of target %r (%s) cannot be read: %s", name, origin, error)
        return UnloadedTarget(name, origin, error, problem="is loaded but its device cannot be read")

    def rescan(self) -> None:
        """Look again for plug-ins and the targets file's tables (installed or edited
        since): entries found by the last scan and not loaded are dropped first (those
        still loading are kept: a second load of a hanging one would hang too)."""
        with self._lock:
            self._lazy = {n: lazy for n, lazy in self._lazy.items()
                          if not lazy.scanned or lazy.in_flight}  # fmt: skip
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
        """The targets file's kind tables and the plug-ins, as lazy entries (once, until
        :meth:`rescan`)."""
        if self._plugins_found:
            return
        self._plugins_found = True
        for found in _target_catalog.scanned(lambda name: name in self._targets or name in self._lazy):
            if isinstance(found, _target_catalog.PlugIn):
                self._lazy[found.name] = LazyTarget(found.name, found.load, found.origin, scanned=True)
            elif found.error is not None:  # listed as broken; asking for it says why
                self._lazy[found.name] = LazyTarget(
                    found.name, _refused, found.origin, error=found.error, scanned=True, refused=True
                )
            else:
                load = functools.partial(
                    _make_priced, found.kind, found.name, found.settings, _secrets.masked(found.options)
                )
                self._lazy[found.name] = LazyTarget(found.name, load, found.origin, scanned=True)


def _make_priced(kind: str, name: str, settings: _prices.PriceSettings | None, options: dict) -> Target:
    """A targets-file table's target, with its cost settings kept for it."""
    target = make(kind, name, **options)
    _prices.configure(target, settings)
    return target


def _refused() -> NoReturn:  # never called: a refused entry raises before loading
    raise InvalidOptionError("this target's configuration was refused")


def _load_error(lazy: LazyTarget, error: str) -> UnknownTargetError:
    return UnknownTargetError(f"target {lazy.name!r} ({lazy.origin}) could not be loaded: {error}")


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
    """A target of ``kind``; options named like secrets reach its factory as
    :class:`~qnb._secrets.Secret` (a ``str`` whose ``repr`` is masked)."""
    options = _secrets.masked(options)  # before anything can fail with it in a frame
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

    Any target also takes ``price={...}`` (terms over qnb's price table, see
    ``docs/cost.md``), ``budget=`` (the most its stored jobs may add up to) and, for IBM
    Quantum, ``plan=``; they are checked here and kept with the target.
    """
    options = _secrets.masked(options)  # keys never sit in this frame as plain text
    if not isinstance(name, str) or not name:
        raise InvalidOptionError(f"a target's name is a non-empty string, got {name!r}")
    options, settings = _cost_settings(name, target, options)
    if isinstance(target, str):
        made = make(target, name, **options)
    else:
        made = as_target(name, target, **options)
    _prices.configure(made, settings)
    registry.register(name, made)
    return made


def _cost_settings(name: str, target: object, options: dict) -> tuple[dict, _prices.PriceSettings | None]:
    """``options`` without the cost ones, and those checked. A kind registered by name
    without any takes the targets file's, as its factory takes the rest of that table."""
    kind = target if isinstance(target, str) else None
    where = f"given to qnb.register_target({name!r}, ...)"
    options, settings = _prices.split_options(options, target=name, where=where, kind=kind)
    if settings is None and kind is not None:
        try:
            filed_kind, filed = _config.configured_kinds().get(name, ("", {}))
        except QnbError:  # an unreadable targets file: the options given are enough
            return options, None
        if filed_kind == kind:
            _, settings = _prices.split_options(filed, target=name, where=f"in {_config.targets_file()}", kind=kind)
    return options, settings


register_kind("ionq", "qnb._targets._ionq:IonQTarget")  # needs the extra qnb[ionq] (cirq-ionq)
register_kind("braket", "qnb._targets._braket:BraketTarget")  # needs the extra qnb[braket] (amazon-braket-sdk)
register_kind("ibm", "qnb._targets._ibm:IBMTarget")  # needs the extra qnb[ibm] (qiskit-ibm-runtime, qiskit-aer)
register_kind("azure", "qnb._targets._azure:AzureTarget")  # needs the extra qnb[azure] (azure-quantum)
