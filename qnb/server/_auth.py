"""Users of a queue server: bearer tokens from a users file.

The file is TOML and holds a hash of each token, never the token::

    [users.alice]
    role = "user"            # or "admin"
    token_sha256 = "3f1c..."  # qnb add-user writes this line and prints the token once

Tokens are long random strings, so a plain SHA-256 is enough (no password stretching
needed), and a lookup by hash compares in constant time with respect to the token.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import secrets
import tomllib
from pathlib import Path

from .._errors import HostNotAllowedError, NotAuthenticatedError, QnbError, UsersFileError

ROLES = ("user", "admin")
#: Who calls a server without a users file (open mode, loopback only): an admin.
OPEN_MODE_USER = "local"
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclasses.dataclass(frozen=True)
class User:
    name: str
    role: str = "user"

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def may_act_on(self, owner: str) -> bool:
        return self.is_admin or owner == self.name


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "qnb_" + secrets.token_urlsafe(32)


class Users:
    """Who may use the server, by token hash."""

    def __init__(self, users_by_hash: dict[str, User]):
        self._by_hash = users_by_hash

    @classmethod
    def from_file(cls, path: str | Path) -> Users:
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise UsersFileError(f"users file {path} does not exist (qnb add-user creates it)") from None
        except tomllib.TOMLDecodeError as exc:
            raise UsersFileError(f"users file {path} is not valid TOML: {exc}") from None
        table = data.get("users")
        if not isinstance(table, dict) or not table:
            raise UsersFileError(f"users file {path} has no [users.NAME] tables")
        by_hash: dict[str, User] = {}
        for name, entry in table.items():
            where = f"users file {path}, user {name!r}"
            if not _NAME.match(name):
                raise UsersFileError(f"{where}: names use letters, digits, '_', '.', '-'")
            if not isinstance(entry, dict):
                raise UsersFileError(f"{where}: expected a table with role and token_sha256")
            role = entry.get("role", "user")
            if role not in ROLES:
                raise UsersFileError(f"{where}: role must be 'user' or 'admin', got {role!r}")
            digest = entry.get("token_sha256")
            if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
                raise UsersFileError(
                    f"{where}: token_sha256 must be the 64-hex-digit SHA-256 of the token "
                    "(never the token itself)"
                )
            if digest in by_hash:
                raise UsersFileError(f"{where}: the same token hash is given to two users")
            by_hash[digest] = User(name, role)
        return cls(by_hash)

    def authenticate(self, token: str) -> User | None:
        return self._by_hash.get(hash_token(token))

    @property
    def names(self) -> list[str]:
        return sorted(u.name for u in self._by_hash.values())


def add_user(path: str | Path, name: str, *, role: str = "user") -> str:
    """Append a user to a users file (created if missing); returns the new token."""
    if not _NAME.match(name):
        raise UsersFileError(f"user name {name!r}: use letters, digits, '_', '.', '-'")
    if role not in ROLES:
        raise UsersFileError(f"role must be 'user' or 'admin', got {role!r}")
    path = Path(path)
    if path.exists():
        existing = tomllib.loads(path.read_text()).get("users", {})
        if name in existing:
            raise UsersFileError(f"user {name!r} is already in {path}; remove it first")
    token = new_token()
    with path.open("a") as handle:
        handle.write(f'\n[users.{name}]\nrole = "{role}"\ntoken_sha256 = "{hash_token(token)}"\n')
    return token


def caller(users: Users | None, headers: list[tuple[bytes, bytes]]) -> User:
    """The user a request comes from, from its raw ASGI headers.

    The one auth path: the FastAPI dependency and the fast paths both call this, so a
    request is read the same way everywhere. Two ``Authorization``, ``Host`` or
    ``X-Qnb-User`` headers are refused (proxies and frameworks disagree on which one
    counts: open mode would check one Host and a proxy route by the other).
    """
    authorization: list[bytes] = []
    named: list[bytes] = []
    hosts: list[bytes] = []
    for key, value in headers:
        if key == b"authorization":
            authorization.append(value)
        elif key == b"x-qnb-user":
            named.append(value)
        elif key == b"host":
            hosts.append(value)
    if len(hosts) > 1 or len(named) > 1:
        which = "Host" if len(hosts) > 1 else "X-Qnb-User"
        raise QnbError(f"{max(len(hosts), len(named))} {which} headers; send exactly one")
    host = hosts[0] if hosts else None
    if len(authorization) > 1:
        raise NotAuthenticatedError(
            f"{len(authorization)} Authorization headers; send exactly one: "
            "Authorization: Bearer <token>"
        )
    if users is None:
        _check_loopback_host(host)
        return User(named[0].decode("latin-1") if named else OPEN_MODE_USER, "admin")
    if not authorization:
        raise NotAuthenticatedError("a bearer token is required: Authorization: Bearer <token>")
    scheme, _, token = authorization[0].decode("latin-1").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise NotAuthenticatedError("a bearer token is required: Authorization: Bearer <token>")
    user = users.authenticate(token)
    if user is None:
        raise NotAuthenticatedError("unknown token; ask the server's admin for yours")
    return user


def _check_loopback_host(host: bytes | None) -> None:
    """Open mode trusts every caller as admin, which is safe only if the caller is on
    this machine. A page on another site can reach a loopback server through DNS
    rebinding (its own name resolving to 127.0.0.1), but its requests then carry that
    name in Host: only loopback names are answered."""
    name = (host or b"").decode("latin-1").strip().lower()
    if name.startswith("["):
        name = name[: name.find("]") + 1]
    else:
        name = name.rpartition(":")[0] if name.count(":") == 1 else name
    if name not in LOOPBACK_HOSTS:
        raise HostNotAllowedError(
            f"Host {name or '(none)'!r} is not a loopback name; a server without a users "
            "file answers only requests addressed to localhost or 127.0.0.1 (give the "
            "server a users file to serve other names)"
        )
