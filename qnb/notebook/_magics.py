"""IPython magics (``%load_ext qnb``): thin wrappers over the Python API.

User mistakes (a bad option, a cell without circuits, an unknown job or target, a
syntax error in the cell) raise ``UsageError`` with one line, before anything is
submitted.
"""

from __future__ import annotations

import ast
import concurrent.futures
import html
import math
import numbers
import time

import cirq
import numpy as np
from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.display import display

from .. import _api
from .._errors import QnbError
from .._api import get_manager
from .._job import Job, when
from .._options import check_max_cost
from .._status import TERMINAL
from .._views import estimate_text
from ._widgets import monitor

#: The name under which the last submitted job is always reachable.
LAST_JOB = "_qjob"
#: How often a wait wakes to let Ctrl-C through.
_WAIT_SLICE = 0.2


class _Table:
    """A small table that shows as text in a terminal and as HTML in a notebook."""

    def __init__(self, title: str, header: list[str], rows: list[list[object]]):
        self.title, self.header, self.rows = title, header, rows

    def __repr__(self) -> str:
        rows = [self.header] + [[str(v) for v in r] for r in self.rows]
        widths = [max(len(r[i]) for r in rows) for i in range(len(self.header))]
        lines = [self.title] + ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.header)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r) + "</tr>" for r in self.rows
        )
        return f"<b>{html.escape(self.title)}</b><table><tr>{head}</tr>{body}</table>"


def _assigned_names(tree: ast.Module) -> list[str]:
    """Names the cell binds at its top level (not inside functions or comprehensions),
    in source order."""
    found: list[ast.Name] = []

    class Visitor(ast.NodeVisitor):
        def visit_Name(self, node: ast.Name) -> None:
            if isinstance(node.ctx, ast.Store):
                found.append(node)

        def _skip(self, node) -> None:
            return None

        visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = visit_Lambda = _skip
        visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = _skip

    Visitor().visit(tree)
    ordered = sorted(found, key=lambda n: (n.lineno, n.col_offset))
    return list(dict.fromkeys(n.id for n in ordered))


def _is_circuit(value: object) -> bool:
    return isinstance(value, (cirq.Circuit, cirq.FrozenCircuit))


def _circuits_value(value: object):
    """``value`` if it is a circuit, or a non-empty list/tuple/dict of circuits; else None."""
    if _is_circuit(value):
        return value
    if isinstance(value, (list, tuple)) and value and all(_is_circuit(c) for c in value):
        return list(value)
    if isinstance(value, dict) and value and all(_is_circuit(c) for c in value.values()):
        return value
    return None


def _wait(job: Job, timeout: float | None) -> None:
    """Wait for ``job`` in short slices, so Ctrl-C stops the wait (not the job)."""
    done = when(job)
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while True:
            slice_ = _WAIT_SLICE if deadline is None else min(_WAIT_SLICE, deadline - time.monotonic())
            if slice_ <= 0:
                print(
                    f"job {job.id[:8]} is still {job.status.value} after {timeout:g} s; it "
                    f"carries on (%qwait {job.id[:8]} waits again, %qcancel {job.id[:8]} cancels it)"
                )
                return
            try:
                done.result(timeout=slice_)
                return
            except concurrent.futures.TimeoutError:
                continue
    except KeyboardInterrupt:
        print(
            f"stopped waiting; job {job.id[:8]} carries on ({job.status.value}). "
            f"Cancel it with %qcancel {job.id[:8]} or job.cancel()."
        )


def _unquote(text: str) -> str:
    if len(text) > 1 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]  # magic_arguments keeps the quotes of --opt "a b"
    return text


def sweep_from_spec(spec: str, namespace: dict) -> cirq.Sweep:
    """``"theta=linspace(0, 2*pi, 50)"`` (also ``points(...)``, a list, one number, or
    any expression of the notebook's variables giving one) as a Cirq sweep."""
    name, sep, expression = spec.partition("=")
    name = name.strip()
    if not sep or not name.isidentifier() or not expression.strip():
        raise UsageError(
            f"--sweep takes NAME=VALUES, e.g. \"theta=linspace(0, 2*pi, 50)\" or "
            f"\"t=[0, 0.5, 1]\"; got {spec!r}"
        )
    helpers = {
        "pi": math.pi,
        "np": np,
        "linspace": lambda start, stop, n: cirq.Linspace(name, start, stop, int(n)),
        "points": lambda *values: cirq.Points(name, list(values)),
    }
    try:
        value = eval(expression, {**namespace, **helpers})  # the user's own kernel
    except Exception as exc:
        raise UsageError(f"--sweep {spec!r}: {type(exc).__name__}: {exc}") from None
    if isinstance(value, cirq.Sweep):
        return value
    if isinstance(value, numbers.Real):
        return cirq.Points(name, [value])
    try:
        return cirq.Points(name, [float(v) for v in value])
    except (TypeError, ValueError):
        raise UsageError(
            f"--sweep {spec!r} gives a {type(value).__name__}; give numbers, a list of "
            "numbers, linspace(start, stop, n) or points(...)"
        ) from None


def _number_or_text(text: str | None, kind: type, *, default):
    """A flag's value as ``kind`` when it reads as one, else the text itself, so that
    the API refuses it with the message a Python caller gets (``qnb._options``)."""
    if text is None:
        return default
    text = _unquote(text)
    try:
        return kind(text)
    except ValueError:
        return text


@magics_class
class QnbMagics(Magics):
    # -- helpers ---------------------------------------------------------------------------

    def _job(self, ref: str) -> Job:
        value = self.shell.user_ns.get(ref)
        if isinstance(value, Job):
            return value
        try:
            return _api.get_job(ref)
        except QnbError as exc:
            raise UsageError(str(exc)) from None

    def _check_target(self, target: str) -> None:
        try:
            get_manager().targets.get(target)
        except QnbError as exc:
            raise UsageError(str(exc)) from None

    def _run_cell(self, cell: str):
        """Run the cell in the user namespace; return the circuits it produced."""
        source = self.shell.transform_cell(cell)
        try:
            tree = ast.parse(source, filename="<%%qsubmit cell>")
        except SyntaxError as exc:
            raise UsageError(
                f"syntax error in the %%qsubmit cell, line {exc.lineno}: {exc.msg}"
            ) from None
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body.pop().value)
        names = _assigned_names(tree)
        namespace = self.shell.user_ns
        exec(compile(tree, "<%%qsubmit cell>", "exec"), namespace)
        if last is not None:
            value = _circuits_value(eval(compile(last, "<%%qsubmit cell>", "eval"), namespace))
            if value is not None:
                return value
        circuits = {name: namespace[name] for name in names if _is_circuit(namespace.get(name))}
        if not circuits:
            raise UsageError(
                "no circuit in the %%qsubmit cell: end it with a cirq.Circuit (or a list or "
                "dict of them), or assign circuits to names"
            )
        return circuits

    def _params(self, args) -> cirq.Sweepable | None:
        if args.sweep and args.params:
            raise UsageError("give either --sweep or --params, not both")
        if args.params is not None:
            if args.params not in self.shell.user_ns:
                raise UsageError(f"--params names {args.params!r}, which is not defined")
            return self.shell.user_ns[args.params]
        if not args.sweep:
            return None
        sweeps = [sweep_from_spec(_unquote(spec), self.shell.user_ns) for spec in args.sweep]
        return sweeps[0] if len(sweeps) == 1 else cirq.Product(*sweeps)

    # -- %%qsubmit ----------------------------------------------------------------------------

    @magic_arguments()
    @argument("--target", "-t", default="sim", help="where to run (see %%qtargets)")
    @argument("--shots", "-s", type=int, default=1000, help="repetitions per circuit")
    @argument("--name", "-n", default=None, help="the job's name")
    @argument("--out", "-o", default=None, help="bind the Job to this variable")
    @argument("--wait", "-w", action="store_true", help="show the job, then block until it ends")
    @argument("--timeout", type=float, default=None, help="with --wait: stop waiting after S s")
    @argument("--front", action="store_true", help="put the job at the head of the queue")
    @argument("--compile", action="store_true", help="map the circuits onto the target device")
    @argument("--qasm", action="store_true", help="the cell is OpenQASM 2.0 text")
    @argument(
        "--sweep",
        action="append",
        default=None,
        help="a parameter sweep, e.g. \"theta=linspace(0, 2*pi, 50)\" or \"t=[0, 1, 2]\"; "
        "several --sweep make a grid (cirq.Product)",
    )
    @argument("--params", default=None, help="a variable holding a cirq sweep (any cirq.Sweepable)")
    @argument("--tag", action="append", default=None, help="a tag to find the job by (repeat for several)")
    @argument(
        "--notify",
        action="append",
        default=None,
        help="an Apprise URL sent one message when the job ends (repeat for several)",
    )
    @argument("--retries", default=None, help="run a transiently failed circuit again, up to N times")
    @argument("--max-cost", default=None, help="refuse the job if its estimated cost is above X")
    @argument("--estimate", action="store_true", help="print what the job would take; submit nothing")
    @cell_magic
    def qsubmit(self, line: str, cell: str):
        """Run the cell, submit the circuits it produced as one job, show the job live.

        Circuits: the cell's last expression if it is a circuit, a list or a dict of
        circuits; otherwise every circuit the cell assigned to a name, labelled by name.
        With ``--estimate`` nothing is submitted: it prints ``qnb.estimate(...)`` of them.
        """
        args = parse_argstring(self.qsubmit, line)
        if args.name is not None and len(args.name) > 1 and args.name[0] == args.name[-1] in "'\"":
            args.name = args.name[1:-1]  # magic_arguments keeps the quotes of --name "a b"
        if args.out is not None and not args.out.isidentifier():
            raise UsageError(f"--out needs a variable name, got {args.out!r}")
        if args.timeout is not None and args.timeout <= 0:
            raise UsageError(f"--timeout must be a positive number of seconds, got {args.timeout:g}")
        if args.estimate and (args.wait or args.timeout is not None):
            raise UsageError("--estimate submits nothing: there is no job to --wait for")
        self._check_target(args.target)
        params = self._params(args)
        circuits = cell if args.qasm else self._run_cell(cell)
        if args.estimate:
            return self._estimate(circuits, args, params)
        try:
            job = _api.submit(
                circuits,
                target=args.target,
                shots=args.shots,
                name=args.name,
                front=args.front,
                compile=args.compile,
                params=params,
                tags=[_unquote(tag) for tag in args.tag or ()],
                notify=[_unquote(url) for url in args.notify] if args.notify else None,
                retries=_number_or_text(args.retries, int, default=0),
                max_cost=_number_or_text(args.max_cost, float, default=None),
            )
        except QnbError as exc:
            raise UsageError(str(exc)) from None
        self.shell.user_ns[LAST_JOB] = job
        if args.out:
            self.shell.user_ns[args.out] = job
        if args.wait or args.timeout is not None:
            # Shown before waiting, so its Cancel button works during the wait (page
            # actions reach the kernel on a subshell while this cell blocks).
            display(job)
            _wait(job, args.timeout)
            return None
        return job

    def _estimate(self, circuits, args, params) -> None:
        """``%%qsubmit --estimate``: print the estimate (``--out`` binds it); nothing
        is submitted."""
        max_cost = _number_or_text(args.max_cost, float, default=None)
        try:
            if max_cost is not None:
                check_max_cost(max_cost)  # the same refusal as a submit's
            found = _api.estimate(
                circuits, target=args.target, shots=args.shots, params=params, compile=args.compile
            )
        except QnbError as exc:
            raise UsageError(str(exc)) from None
        if args.out:
            self.shell.user_ns[args.out] = found
        heading = f"estimate on {args.target}, {args.shots} shots (nothing submitted):"
        print(estimate_text(found, heading=heading, max_cost=max_cost, over="--max-cost"))

    # -- line magics ---------------------------------------------------------------------------

    @magic_arguments()
    @argument("--target", "-t", default=None, help="show only this target")
    @argument("--user", "-u", default=None, help="show only this user's jobs")
    @argument("--status", default=None, help="show only jobs with this status")
    @argument("--tag", default=None, help="show only jobs with this tag")
    @line_magic
    def qqueue(self, line: str):
        """The live queue monitor (one per kernel, updated in place)."""
        args = parse_argstring(self.qqueue, line)
        try:
            tag = None if args.tag is None else _unquote(args.tag)
            return monitor(target=args.target, user=args.user, status=args.status, tag=tag)
        except QnbError as exc:
            raise UsageError(str(exc)) from None

    @magic_arguments()
    @argument("--status", default=None, help="only jobs with this status")
    @argument("--target", "-t", default=None, help="only jobs on this target")
    @argument("--user", "-u", default=None, help="only this user's jobs")
    @argument("--limit", type=int, default=20, help="at most this many (newest first)")
    @argument("--tag", action="append", default=None, help="only jobs with this tag (repeat: all of them)")
    @line_magic
    def qjobs(self, line: str):
        """Recent jobs as a table."""
        args = parse_argstring(self.qjobs, line)
        if args.target is not None:
            self._check_target(args.target)
        try:
            found = _api.jobs(status=args.status, target=args.target, user=args.user, limit=args.limit,
                              tag=[_unquote(tag) for tag in args.tag] if args.tag else None)  # fmt: skip
        except QnbError as exc:
            raise UsageError(str(exc)) from None
        rows = []
        for job in found:
            done, total = job.progress
            added = time.strftime("%H:%M:%S", time.localtime(job.time_added))
            rows.append([job.id[:8], job.name, job.target, job.user, job.status.value, f"{done}/{total}", added])
        return _Table(
            f"{len(rows)} job(s), newest first",
            ["id", "name", "target", "user", "status", "done", "added"],
            rows,
        )

    @magic_arguments()
    @argument("job", help="a job id, a unique id prefix, or a variable holding a Job")
    @line_magic
    def qstatus(self, line: str):
        """One job, live."""
        return self._job(parse_argstring(self.qstatus, line).job)

    @magic_arguments()
    @argument("jobs", nargs="*", help="job ids, unique id prefixes, or variables holding Jobs")
    @argument("--all", action="store_true", help="every unfinished job of this kernel")
    @line_magic
    def qcancel(self, line: str):
        """Ask to cancel jobs (idempotent: a finished job keeps its status)."""
        args = parse_argstring(self.qcancel, line)
        if bool(args.jobs) == args.all:
            raise UsageError("give job ids to %qcancel, or --all (not both)")
        if args.all:
            manager = get_manager()
            jobs = [
                Job(r.id, manager=manager)
                for r in manager.find(limit=10_000)
                if r.status not in TERMINAL and manager.record(r.id) is not None  # this kernel's
            ]
        else:
            jobs = [self._job(ref) for ref in args.jobs]  # all resolved before any is cancelled
        if not jobs:
            print("no unfinished jobs to cancel")
        for job in jobs:
            try:
                status = job.cancel()
            except QnbError as exc:
                raise UsageError(str(exc)) from None
            print(f"job {job.id[:8]} ({job.name}): {status.value}")

    @magic_arguments()
    @argument("job", help="a job id, a unique id prefix, or a variable holding a Job")
    @argument("--timeout", type=float, default=None, help="stop waiting after S seconds")
    @line_magic
    def qwait(self, line: str):
        """Block until a job ends (Ctrl-C stops waiting; the job carries on)."""
        args = parse_argstring(self.qwait, line)
        job = self._job(args.job)
        _wait(job, args.timeout)
        return job

    @magic_arguments()
    @argument("job", help="a job id, a unique id prefix, or a variable holding a Job")
    @argument("--plot", action="store_true", help="draw histograms of the counts")
    @argument("--label", "-l", default=None, help="one circuit of a batch")
    @argument("--top", type=int, default=None, help="with --plot: the most frequent outcomes only")
    @argument("--probabilities", action="store_true", help="with --plot: frequencies, not counts")
    @line_magic
    def qresult(self, line: str):
        """A finished job's results (``--plot`` draws them)."""
        args = parse_argstring(self.qresult, line)
        job = self._job(args.job)
        if not job.done():
            raise UsageError(
                f"job {job.id[:8]} is still {job.status.value}; %qwait {job.id[:8]} waits for it"
            )
        try:
            result = job.result()
            if args.label is not None and args.label not in job.result().labels:
                raise UsageError(
                    f"job {job.id[:8]} has no circuit {args.label!r}; labels: "
                    + ", ".join(result.labels[:10])
                )
            if args.plot:
                result.plot(args.label, top=args.top, probabilities=args.probabilities)
                return None
            return result[args.label] if args.label is not None else result
        except (QnbError, KeyError) as exc:
            raise UsageError(str(exc).strip("'\"")) from None

    @magic_arguments()
    @argument("job", help="a job id, a unique id prefix, or a variable holding a Job")
    @argument("--failed-only", action="store_true", help="only the failed or cancelled circuits")
    @line_magic
    def qresubmit(self, line: str):
        """Run a finished job's circuits again as a new job (linked to it)."""
        args = parse_argstring(self.qresubmit, line)
        job = self._job(args.job)
        try:
            new = job.resubmit(only_failed=args.failed_only)
        except QnbError as exc:
            raise UsageError(str(exc)) from None
        self.shell.user_ns[LAST_JOB] = new
        return new

    @line_magic
    def qtargets(self, line: str):
        """The targets jobs can run on."""
        if line.strip():
            raise UsageError("%qtargets takes no arguments")
        rows = []
        for name, spec in _api.targets().items():
            native = ", ".join(spec.native_gates) or "any"
            rows.append([name, spec.max_qubits, native, spec.max_batch, spec.max_shots, spec.description])
        return _Table(
            "targets", ["name", "max qubits", "native gates", "max batch", "max shots", "about"], rows
        )


def load_ipython_extension(ipython) -> None:
    ipython.register_magics(QnbMagics)
