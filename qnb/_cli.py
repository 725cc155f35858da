"""The ``qnb`` command: look at and act on jobs from a terminal (``qnb jobs``, ``show``,
``result``, ``cancel``, ``resubmit``, ``queue``, ``targets``), run a shared queue server
(``qnb serve``) and add users to its users file (``qnb add-user``).

Job commands are thin over the public Python API and the store under ``$QNB_HOME``;
targets named in the targets file (``$QNB_TARGETS``) are connected on demand. Nothing
heavy is imported at module level: ``qnb --help`` and argument errors stay quick.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import ipaddress
import json
import os
import shutil
import sys
import time
import warnings
from pathlib import Path

from . import __version__
from ._errors import QnbError
from ._estimate import Estimate, cost_text, duration_text
from ._views import cli_job, estimate_text, item_view

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
    from .server._auth import Users  # (light: a bad users file is said before the server loads)

    try:
        users = Users.from_file(args.users) if args.users else None
    except QnbError as exc:
        print(f"qnb serve: {exc}", file=sys.stderr)
        return 2
    try:
        from .server import _serve as serving
        from .server._app import create_app
    except ImportError as exc:
        print(f"qnb serve needs the server extra: pip install 'qnb[server]' ({exc})", file=sys.stderr)
        return 2
    from ._api import JobManager, default_home
    from ._targets import registry
    from .server._cpu import worker

    try:
        registry.get(args.device)  # an unknown device fails before anything starts
        if args.executor:  # issue 9 (Dask): the device's circuits run on a cluster
            from ._targets._registry import on_executor

            registry.register(args.device, on_executor(registry.get(args.device), args.executor))
    except QnbError as exc:
        print(f"qnb serve: {exc}", file=sys.stderr)
        return 2
    db = Path(args.db).expanduser() if args.db else default_home() / "server" / "queue.sqlite3"
    manager = JobManager(
        db.parent, store_path=db, requeue_interrupted=True, warm_pool=not args.executor
    )
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
        serving.skip_final_collection()
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


# -- jobs in the store ---------------------------------------------------------------------

UNFINISHED = ("pending", "queued", "running", "cancelling")
#: How long ``qnb cancel`` waits for a target to confirm before it reports the status.
CANCEL_WAIT_SECONDS = 15.0


def _qnb():
    """The public API (its manager starts the simulation workers only if this command
    runs a circuit: ``qnb resubmit``)."""
    import qnb

    return qnb


def _store():
    """The store alone, for commands that only read it: no Cirq, no matplotlib, no
    manager (``qnb jobs`` answers in a fraction of a second). Dead processes' jobs are
    recovered first, as any process does."""
    from ._core import _ownership

    return _ownership.open_for_reading()


def _statuses(wanted: list[str] | None) -> list[str] | None:
    if not wanted:
        return None
    from ._status import JobStatus

    known = {s.value for s in JobStatus}
    unknown = [w for w in wanted if w not in known]
    if unknown:
        raise QnbError(f"unknown status {unknown[0]!r}; statuses: {', '.join(sorted(known))}")
    return wanted


def _connect_if_remote(target: str) -> bool:
    """Connect ``target`` when the targets file names it (and nothing is registered under
    that name yet); True for a queue server's target."""
    qnb = _qnb()
    from . import _config

    configured = target in _config.configured_targets()
    if configured and target not in qnb.targets():
        qnb.connect(target)
    return configured


def _when(timestamp: float | None, *, seconds: bool = False) -> str:
    if timestamp is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%m-%d %H:%M", time.localtime(timestamp))


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def _table(headers: list[str], rows: list[list[str]], *, limits: dict[int, int]) -> None:
    """Columns as wide as their content (``limits``: the most for some), the last one
    taking what is left of the terminal (80 columns when output is not a terminal)."""
    total = shutil.get_terminal_size((80, 24)).columns
    widths = []
    for i, header in enumerate(headers[:-1]):
        natural = max([len(header)] + [len(row[i]) for row in rows])
        widths.append(min(natural, limits.get(i, natural)))
    widths.append(max(8, total - sum(widths) - 2 * (len(headers) - 1)))
    for row in [headers, *rows]:
        cells = [_clip(cell, width).ljust(width) for cell, width in zip(row, widths)]
        print("  ".join(cells).rstrip())


def _print_json(value) -> None:
    print(json.dumps(value, indent=2))


def _jobs(args: argparse.Namespace) -> int:
    store = _store()
    found = store.find_jobs(status=_statuses(args.status), target=args.target, user=args.user,
                            tags=args.tag or (), name=args.name, limit=args.limit)  # fmt: skip
    views = [cli_job(job) for job in found]
    if args.json:
        _print_json(views)
        return 0
    if not views:
        print("no jobs", file=sys.stderr)
        return 0
    rows = [
        [v["id"][:8], v["status"], v["target"], v["user"], f"{v['items_done']}/{v['items']}",
         _when(v["time_added"]), v["name"]]
        for v in views
    ]
    headers = ["ID", "STATUS", "TARGET", "USER", "ITEMS", "ADDED", "NAME"]
    if any("estimate" in v for v in views):  # (a column only where some job has an ETA)
        headers.insert(5, "ETA")
        for row, v in zip(rows, views):
            row.insert(5, _eta(v.get("estimate")))
    if any("tags" in v for v in views):  # (a column only where some job has tags)
        headers.append("TAGS")
        for row, v in zip(rows, views):
            row.append(", ".join(v.get("tags", ())))
    _table(headers, rows, limits={2: 12, 3: 12, headers.index("NAME"): 30})
    return 0


def _eta(estimate: dict | None, now: float | None = None) -> str:
    """An unfinished job's expected finish, short: ``"14:32 (~3 min)"``; ``"-"`` unknown."""
    finish = (estimate or {}).get("finish")
    if not isinstance(finish, (int, float)):
        return "-"
    left = finish - (time.time() if now is None else now)
    return f"{time.strftime('%H:%M', time.localtime(finish))} ({duration_text(left) if left > 0 else 'due'})"


def _outlook(view: dict) -> list[tuple[str, str]]:
    """``qnb show``'s lines on what is left (while estimated) and the cost (when known)."""
    if "estimate" not in view and "cost" not in view:
        return []
    lines = []
    if "estimate" in view:
        left = Estimate.from_json(view["estimate"])
        figures = []
        if left.wait_seconds is not None:
            figures.append("starts now" if left.wait_seconds < 1 else f"starts in {duration_text(left.wait_seconds)}")
        if left.run_seconds is not None:
            figures.append(f"runs {duration_text(left.run_seconds)}")
        lines.append(("eta", ", ".join([_eta(view["estimate"]), *figures])))
        if left.basis:
            lines.append(("basis", left.basis))
    if "cost" in view:
        lines.append(("cost", f"{cost_text(view['cost'], view.get('currency'))} (estimated at submit)"))
    return lines


def _show(args: argparse.Namespace) -> int:
    job = _store().resolve(args.job)
    view = cli_job(job)
    items = [item_view(it, retries=job.retries) for it in job.items]
    if args.json:
        _print_json({**view, "usage": job.usage, "item_list": items})
        return 0
    elapsed = None if job.time_started is None else (job.time_finished or time.time()) - job.time_started
    lines = [
        ("job", view["id"]),
        ("name", view["name"]),
        ("target", view["target"]),
        ("user", view["user"]),
        ("status", f"{view['status']} ({view['items_done']}/{view['items']} items finished)"),
        ("shots", str(view["shots"])),
        ("added", _when(view["time_added"], seconds=True)),
        ("started", _when(view["time_started"], seconds=True)),
        ("finished", _when(view["time_finished"], seconds=True)),
        ("elapsed", "-" if elapsed is None else f"{elapsed:.2f} s"),
    ]
    if view["parent_id"]:
        lines.append(("parent", view["parent_id"]))
    if job.tags:
        lines.append(("tags", ", ".join(job.tags)))
    if view["error"]:
        lines.append(("error", view["error"]))
    lines.extend(_outlook(view))
    if job.usage:  # what the vendor says it used (IBM's quantum seconds, Azure's cost)
        lines.append(("usage", ", ".join(f"{key} {value}" for key, value in sorted(job.usage.items()))))
    for key, value in lines:
        print(f"{key:<9}{value}")
    print()
    _table(["LABEL", "STATUS", "ERROR"], [[i["label"], _item_status(i), i["error"] or ""] for i in items],
           limits={0: 24})
    return 0


def _item_status(item: dict) -> str:
    """An item's status, ``"running, retrying (1/3)"`` while it runs again."""
    if item.get("attempts") and item["status"] not in ("completed", "failed", "cancelled"):
        return f"{item['status']}, retrying ({item['attempts']}/{item['retries']})"
    return item["status"]


def _estimate(args: argparse.Namespace) -> int:
    """What submitting the circuits of an OpenQASM 2.0 file would take (nothing submitted)."""
    qnb = _qnb()
    from ._options import check_max_cost

    max_cost = check_max_cost(args.max_cost)
    try:
        text = Path(args.file).read_text(encoding="utf-8")
    except OSError as exc:
        raise QnbError(f"cannot read {args.file}: {exc.strerror or exc}") from None
    _connect_if_remote(args.target)
    found = qnb.estimate(text, target=args.target, shots=args.shots, compile=args.compile)
    if args.json:
        _print_json(found.as_json())
        return 0
    heading = f"{args.file} on {args.target}, {args.shots} shots:"
    print(estimate_text(found, heading=heading, max_cost=max_cost, over="--max-cost"))
    return 0


def _result(args: argparse.Namespace) -> int:
    # An unknown id, or a job still running without --wait, is said from the store alone
    # (0.1 s); only results to decode or wait for load Cirq.
    stored = _store().resolve(args.job)
    if not stored.done and not args.wait:
        raise QnbError(
            f"job {stored.id[:8]} is still {stored.status.value}; `qnb result --wait {args.job}` "
            "waits for it"
        )
    job = _qnb().get_job(stored.id)
    if not job.done():
        _connect_if_remote(job.target)
        print(f"waiting for job {job.id[:8]} ({job.status.value})...", file=sys.stderr, flush=True)
    result = job.result(timeout=args.timeout)
    counts = {label: dict(sorted(result.counts(label).items())) for label in result}
    if args.json:
        _print_json({"id": job.id, "status": job.status.value, "shots": job.shots,
                     "counts": counts, "missing": result.missing})
        return 0
    for label, histogram in counts.items():
        print(f"{label}:")
        width = max(len(bits) for bits in histogram) if histogram else 0
        for bits, n in histogram.items():
            print(f"  {bits:<{width}}  {n}")
    for label, reason in result.missing.items():
        print(f"{label}: no result ({reason})")
    return 0


def _wait(args: argparse.Namespace) -> int:
    """Wait for a job's end, print its status, and send one message to the ``--notify``
    URLs (default: ``$QNB_NOTIFY`` or the targets file's ``[notify] urls``)."""
    qnb = _qnb()
    from . import _job, _notify, _options

    urls = _options.check_notify(args.notify or None)  # refused before any waiting
    job = qnb.get_job(args.job)
    if not job.done():
        _connect_if_remote(job.target)
        print(f"waiting for job {job.id[:8]} ({job.status.value})...", file=sys.stderr, flush=True)
        try:
            _job.when(job).result(args.timeout)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(
                f"job {job.id[:8]} is still {job.status.value} after {args.timeout} s; it carries on"
            ) from None
    print(f"{job.id[:8]}  {job.status.value}")
    if urls and not _notify.send(urls, *_notify.message(job)):
        raise QnbError(f"the notification of job {job.id[:8]} could not be sent (see the log line above)")
    return 0 if job.status.value == "completed" else 1


def _cancel(args: argparse.Namespace) -> int:
    qnb = _qnb()
    if args.all == bool(args.jobs):
        raise QnbError("give job ids (or unique prefixes), or --all for every unfinished job")
    if args.all:
        jobs = qnb.jobs(status=list(UNFINISHED), limit=1_000_000)
    else:
        jobs = [qnb.get_job(ref) for ref in args.jobs]
    failures = 0
    for job in jobs:
        try:
            _connect_if_remote(job.target)
            job.cancel()
            if not job.done():  # a running job ends once its target confirms
                try:
                    job.result(timeout=CANCEL_WAIT_SECONDS)
                except (QnbError, TimeoutError):
                    pass
        except QnbError as exc:
            print(f"qnb cancel: {job.id[:8]}: {exc}", file=sys.stderr)
            failures += 1
            continue
        print(f"{job.id[:8]}  {job.status.value}")
    return 1 if failures else 0


def _resubmit(args: argparse.Namespace) -> int:
    qnb = _qnb()
    job = qnb.get_job(args.job)
    remote = _connect_if_remote(job.target)
    new = job.resubmit(only_failed=args.failed_only)
    print(new.id, flush=True)
    if remote:
        return 0  # the server has it and runs it
    # A local target runs the job in this process: wait for it, or it is interrupted.
    print(f"running {new.id[:8]} on {new.target} here (Ctrl-C stops it)...", file=sys.stderr)
    try:
        new.result()
    except QnbError:
        pass  # its status says how it ended
    print(f"{new.id[:8]}  {new.status.value}")
    return 0 if new.status.value == "completed" else 1


def _queue(args: argparse.Namespace) -> int:
    from . import _config

    if args.target in _config.configured_targets():  # a queue server: ask it
        qnb = _qnb()
        _connect_if_remote(args.target)
        entries = [
            {"position": e.position, "id": e.id, "user": e.user, "name": e.name,
             "status": e.status.value, "time_added": e.time_added}
            for e in qnb.queue(args.target)
        ]
    else:
        # Each process runs its own queue of a local target; the store shows them all.
        store = _store()
        waiting = store.find_jobs(status=["pending", "queued"], target=args.target, limit=1_000_000)
        if not waiting and not store.find_jobs(target=args.target, limit=1):
            from . import _target_catalog  # a name the store has never seen: is it a target?

            known = list(_target_catalog.listing())
            if args.target not in known:
                raise _target_catalog.unknown_target(args.target, known)
        entries = [
            {"position": None, "id": j.id, "user": j.user, "name": j.name,
             "status": j.status.value, "time_added": j.time_added}
            for j in sorted(waiting, key=lambda j: j.time_added)
        ]
    if args.json:
        _print_json(entries)
        return 0
    if not entries:
        print(f"the queue of {args.target!r} is empty", file=sys.stderr)
        return 0
    rows = [
        [str(e["position"] or "-"), e["id"][:8], e["user"], e["status"], _when(e["time_added"]), e["name"]]
        for e in entries
    ]
    _table(["POS", "ID", "USER", "STATUS", "ADDED", "NAME"], rows, limits={2: 12})
    return 0


def _targets(args: argparse.Namespace) -> int:
    """What a fresh process's ``qnb.targets()`` lists, read without Cirq, and the
    targets file's queue servers."""
    from . import _config, _target_catalog

    views = [
        {"name": name, "kind": "local", "url": None, "max_qubits": spec.max_qubits,
         "max_shots": spec.max_shots, "max_batch": spec.max_batch, "description": spec.description}
        for name, spec in _target_catalog.listing().items()
    ]
    views += [
        {"name": name, "kind": "remote", "url": entry.get("url"), "max_qubits": None,
         "max_shots": None, "max_batch": None,
         "description": f"queue server {entry.get('url')} (from {_config.targets_file()})"}
        for name, entry in _config.configured_targets().items()
    ]
    if args.json:
        _print_json(views)
        return 0
    rows = [
        [v["name"], v["kind"], str(v["max_qubits"] or "-"), str(v["max_shots"] or "-"), v["description"]]
        for v in views
    ]
    _table(["NAME", "KIND", "QUBITS", "SHOTS", "DESCRIPTION"], rows, limits={0: 16})
    return 0


# -- the command line -----------------------------------------------------------------------


class _ShowDefaults(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults that are values; a None default is described in the help."""

    def _get_help_string(self, action):
        if action.default is None or isinstance(action.default, bool):
            return action.help
        return super()._get_help_string(action)


def _estimate_arguments(estimate: argparse.ArgumentParser) -> None:
    estimate.add_argument("file", metavar="FILE")
    estimate.add_argument("--target", default="sim", metavar="T", help="where it would run")
    estimate.add_argument("--shots", type=int, default=1000, metavar="N", help="repetitions per circuit")
    estimate.add_argument("--compile", action="store_true", help="map the circuits onto the target device first")
    estimate.add_argument("--max-cost", type=float, metavar="X", help="say whether a submit would be over X")
    estimate.add_argument("--json", action="store_true", help="as JSON (qnb.Estimate.as_json)")


def parser() -> argparse.ArgumentParser:
    formatter = _ShowDefaults
    top = argparse.ArgumentParser(
        prog="qnb",
        description="qnb: Cirq circuits as async jobs. JOB is a job id or a unique prefix of it.",
    )
    top.add_argument("--version", action="version", version=f"qnb {__version__}")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, run, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help, formatter_class=formatter)
        sub.set_defaults(run=run)
        return sub

    jobs = command("jobs", _jobs, "list jobs in the store, newest first")
    jobs.add_argument("--status", action="append", metavar="S",
                      help="only this status (repeat for several)")
    jobs.add_argument("--target", metavar="T", help="only this target")
    jobs.add_argument("--user", metavar="U", help="only this user's")
    jobs.add_argument("--tag", action="append", metavar="TAG",
                      help="only jobs with this tag (repeat: with all of them)")
    jobs.add_argument("--name", metavar="TEXT", help="only jobs whose name contains TEXT (any case)")
    jobs.add_argument("--limit", type=int, default=50, metavar="N", help="at most N jobs")
    jobs.add_argument("--json", action="store_true", help="a JSON list (fields in the README)")

    show = command("show", _show, "one job in full, with its items")
    show.add_argument("job", metavar="JOB")
    show.add_argument("--json", action="store_true", help="as JSON, items under item_list")

    _estimate_arguments(command("estimate", _estimate, "what submitting an OpenQASM 2.0 file would take (submits nothing)"))

    result = command("result", _result, "counts per label of a finished job")
    result.add_argument("job", metavar="JOB")
    result.add_argument("--wait", action="store_true", help="wait for an unfinished job")
    result.add_argument("--timeout", type=float, metavar="SECONDS",
                        help="with --wait: give up after SECONDS (the job carries on)")
    result.add_argument("--json", action="store_true", help="as JSON")

    wait = command("wait", _wait, "wait for a job to end; with --notify, send one message then")
    wait.add_argument("job", metavar="JOB")
    wait.add_argument("--notify", action="append", metavar="URL",
                      help="an Apprise URL to tell (repeat for several; default: $QNB_NOTIFY or "
                           "the targets file's [notify] urls)")
    wait.add_argument("--timeout", type=float, metavar="SECONDS",
                      help="give up after SECONDS (the job carries on)")

    cancel = command("cancel", _cancel, "cancel jobs (a finished job stays as it is)")
    cancel.add_argument("jobs", nargs="*", metavar="JOB")
    cancel.add_argument("--all", action="store_true", help="every unfinished job in the store")

    resubmit = command("resubmit", _resubmit,
                       "run a finished job's circuits again as a new job (prints its id)")
    resubmit.add_argument("job", metavar="JOB")
    resubmit.add_argument("--failed-only", action="store_true",
                          help="only the items that failed or were cancelled")

    queue = command("queue", _queue, "the jobs waiting for a target")
    queue.add_argument("target", metavar="TARGET")
    queue.add_argument("--json", action="store_true", help="as JSON")

    targets = command("targets", _targets, "local targets and the targets file's servers")
    targets.add_argument("--json", action="store_true", help="as JSON")

    serve = command("serve", _serve, "run a shared queue server for one device")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8765, help="port")
    serve.add_argument("--db", help="SQLite file (default: $QNB_HOME/server/queue.sqlite3)")
    serve.add_argument("--users", help="users file, TOML with token hashes (default: open mode, loopback only)")
    serve.add_argument("--device", default="emulator", help="a local target")
    serve.add_argument("--workers", type=int, help="simulation worker processes (default: by cores and memory)")
    serve.add_argument("--executor", help="run the device's circuits on a Dask cluster: dask://HOST:PORT (needs qnb[dask])")
    serve.add_argument("--max-body", type=int, default=16 * 1024 * 1024, help="largest request body, bytes")
    serve.add_argument("--log-level", default="warning", help="uvicorn's log level")

    add = command("add-user", _add_user, "add users to a users file; prints their tokens")
    add.add_argument("names", nargs="+", metavar="NAME")
    add.add_argument("--users", required=True, help="users file (created if missing)")
    add.add_argument("--admin", action="store_true", help="may act on every user's jobs")
    return top


def _one_line_warnings(message, category, filename, lineno, file=None, line=None) -> None:
    text = str(message)
    print(text if text.startswith("qnb") else f"qnb: {text}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Errors are one line on stderr and a non-zero exit: 1 for a refused command, 2 for
    a usage error, 130 after Ctrl-C."""
    args = parser().parse_args(argv)
    warnings.showwarning = _one_line_warnings
    try:
        return args.run(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `qnb jobs | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (QnbError, TimeoutError, OSError) as exc:
        print(f"qnb {args.command}: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # a bug: say so in one line, the traceback on request
        if os.environ.get("QNB_DEBUG"):
            raise
        print(f"qnb {args.command}: internal error: {type(exc).__name__}: {exc} "
              "(QNB_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
