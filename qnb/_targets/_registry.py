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

The built-in targets use the same lazy entries as plug-ins.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
import threading
from collections.abc import Callable
from importlib import metadata
from typing import Any

import cirq

from .._errors import InvalidOptionError, UnknownTargetError
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

    def register_lazy(self, name: str, load: Callable[[], object], *, origin: str) -> None:
        with self._lock:
            if name not in self._targets:
                self._lazy[name] = LazyTarget(name, load, origin)

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
            origin = f"{entry.value} ({dist.name} {dist.version})" if dist else entry.value
            self._lazy[entry.name] = LazyTarget(entry.name, _plugin_loader(entry), origin)


def _plugin_loader(entry: metadata.EntryPoint) -> Callable[[], object]:
    def load() -> object:
        return entry.load()()

    return load


def as_target(name: str, made: object) -> Target:
    """What a plug-in's factory or ``register_target`` was given, as a Target."""
    if isinstance(made, Target):
        return made
    if isinstance(made, cirq.Sampler):
        samplers = importlib.import_module("qnb._targets._sampler")
        return samplers.SamplerTarget(name, made)
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
        try:
            factory = getattr(importlib.import_module(module), attribute)
        except ImportError as exc:
            extra = module.rpartition("._")[2]
            raise InvalidOptionError(
                f"target kind {kind!r} needs an optional extra: pip install 'qnb[{extra}]' "
                f"({exc})"
            ) from None
    return factory(name, **options)


registry = TargetRegistry()


def register_target(name: str, target: object, **options: Any) -> Target:
    """Add a target under ``name``: a :class:`Target`, a ``cirq.Sampler``, or a kind
    with its options.

    ``qnb.register_target("noisy", "density", noise=0.01)`` adds a density-matrix
    simulator with depolarizing noise; ``"emulator"`` takes the emulator's options
    (``n_qubits``, ``noise``, ``seconds_per_shot``); ``qnb.register_target("engine",
    sampler)`` runs jobs through any ``cirq.Sampler``.
    """
    if not isinstance(name, str) or not name:
        raise InvalidOptionError(f"a target's name is a non-empty string, got {name!r}")
    if isinstance(target, str):
        made = make(target, name, **options)
    elif options:
        raise InvalidOptionError(
            f"options ({', '.join(options)}) go with a kind of target (a string such as "
            "'density'), not with a target or sampler"
        )
    else:
        made = as_target(name, target)
    registry.register(name, made)
    return made
