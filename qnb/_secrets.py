"""Secrets among a target's options (API keys, tokens, passwords), kept out of reprs.

Tracebacks that show local variables (``traceback.TracebackException(...,
capture_locals=True)``, IPython's ``%xmode Verbose``, error reporters) print every
local's ``repr``: a key held as a plain ``str`` in a frame on the way to a vendor's
client is printed with it. A :class:`Secret` is that ``str`` with a masked ``repr``.

It stays a ``str`` on purpose: code written before it existed (a vendor client that
builds ``f"apiKey {key}"``) keeps working. Only ``repr`` is masked, so code that wants
the plain text asks for it where it is used (:meth:`Secret.reveal`), as late as it can.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

#: Option names whose text is a secret: ``api_key``, ``token``, ``client_secret``, ``auth``,
#: ``password``, ... (``api_key_env``, the *name* of a variable, is masked too: harmless).
_SECRET_NAME = re.compile(r"key|token|secret|passw|credential|auth|connection_str", re.IGNORECASE)

MASK = "Secret('********')"


class Secret(str):
    """Text whose ``repr`` never shows it; ``reveal()`` gives the plain ``str``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return MASK

    def reveal(self) -> str:
        return str.__str__(self)

    def __reduce__(self):  # pickled (e.g. to a worker) as a Secret still
        return (Secret, (self.reveal(),))


def is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


def masked(options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` with every text option whose name says secret as a :class:`Secret`
    (other values as they are)."""
    return {
        name: Secret(value) if isinstance(value, str) and is_secret_name(name) else value
        for name, value in options.items()
    }


def reveal(value: object) -> object:
    """The plain text of a :class:`Secret`; anything else as it is (for code that may be
    given either)."""
    return value.reveal() if isinstance(value, Secret) else value
