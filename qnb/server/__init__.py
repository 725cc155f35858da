"""The queue server behind ``qnb serve`` (the ``server`` extra: FastAPI and uvicorn):
``create_app(manager, device=..., users=..., limits=Limits(...))``."""

from ._app import create_app
from ._intake import Limits

__all__ = ["Limits", "create_app"]
