"""The ``qnb`` command: ``qnb serve`` runs a shared queue server, ``qnb add-user`` adds
a user to its users file."""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from pathlib import Path

LOOPBACK_NAMES = {"localhost"}


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _serve(args: argparse.Namespace) -> int:
    if args.users is None and not is_loopback(args.host):
        print(
            f"qnb serve: refusing to listen on {args.host} without a users file: anyone "
            "could use the device. Give --users FILE (qnb add-user creates one), or "
            "listen on 127.0.0.1.",
            file=sys.stderr,
        )
        return 2
    if args.workers is not None:
        os.environ["QNB_WORKERS"] = str(args.workers)  # read when the pool starts
    try:
        from .server import _serve as serving
        from .server._app import create_app
    except ImportError as exc:
        print(f"qnb serve needs the server extra: pip install 'qnb[server]' ({exc})", file=sys.stderr)
        return 2
    from ._errors import QnbError
    from ._manager import JobManager, default_home
    from ._targets._simulators import registry
    from .server._auth import Users
    from .server._cpu import worker

    try:
        users = Users.from_file(args.users) if args.users else None
        registry.get(args.device)  # an unknown device fails before anything starts
    except QnbError as exc:
        print(f"qnb serve: {exc}", file=sys.stderr)
        return 2
    db = Path(args.db).expanduser() if args.db else default_home() / "server" / "queue.sqlite3"
    manager = JobManager(db.parent, store_path=db, requeue_interrupted=True)
    app = create_app(manager, device=args.device, users=users, max_body_bytes=args.max_body)
    requeued = len(manager.requeued_jobs)
    who = f"users from {args.users}" if users else "open mode (no users file, loopback only)"
    print(
        f"qnb serve: device {args.device!r}, store {db}, {who}; "
        f"{requeued} unfinished job(s) taken over; http://{args.host}:{args.port}/v1",
        flush=True,
    )
    try:
        serving.run(app, host=args.host, port=args.port, log_level=args.log_level)
    finally:
        app.state.close()
        worker.close()
        manager.close()
    return 0


def _add_user(args: argparse.Namespace) -> int:
    from .server._auth import UsersFileError, add_user

    for name in args.names:
        try:
            token = add_user(args.users, name, role="admin" if args.admin else "user")
        except UsersFileError as exc:
            print(f"qnb add-user: {exc}", file=sys.stderr)
            return 2
        print(token)
    print(
        f"(added {', '.join(args.names)} to {args.users}, one token per line; the file keeps "
        "only hashes: give the tokens to the users now, they are not shown again)",
        file=sys.stderr,
    )
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="qnb", description="qnb: Cirq circuits as async jobs")
    commands = top.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run a shared queue server for one device")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8765)
    serve.add_argument("--db", help="SQLite file (default: $QNB_HOME/server/queue.sqlite3)")
    serve.add_argument("--users", help="users file (TOML with token hashes)")
    serve.add_argument("--device", default="emulator", help="a local target (default emulator)")
    serve.add_argument("--workers", type=int, help="simulation worker processes")
    serve.add_argument("--max-body", type=int, default=16 * 1024 * 1024, help="bytes")
    serve.add_argument("--log-level", default="warning")
    serve.set_defaults(run=_serve)

    add = commands.add_parser("add-user", help="add users to a users file; prints their tokens")
    add.add_argument("names", nargs="+", metavar="NAME")
    add.add_argument("--users", required=True, help="users file (created if missing)")
    add.add_argument("--admin", action="store_true", help="may act on every user's jobs")
    add.set_defaults(run=_add_user)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
