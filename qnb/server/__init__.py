"""The queue server behind ``qnb serve`` (the ``server`` extra: FastAPI and uvicorn):
``create_app(manager, device=..., users=..., limits=Limits(...))``."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["Limits", "create_app"]

# The app (FastAPI, Cirq: seconds to import) loads on first use of these names, so that
# `qnb add-user` and `qnb serve`'s checks of its users file answer at once.
_LAZY = {"create_app": "._app", "Limits": "._intake"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'qnb.server' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name], __name__), name)
