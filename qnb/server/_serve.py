"""Running the app with uvicorn until Ctrl-C or SIGTERM, and stopping promptly.

Clients hold long-polls (``/v1/events``) open for up to a minute. Left alone, uvicorn
would wait for them until its graceful timeout and then cancel them (an error line and
a ``CancelledError`` traceback); here the first signal also ends every long-poll, so
they answer at once and the server stops within a fraction of a second.

Connections are guarded (:class:`_Gate`): a request's head (request line and headers)
must arrive within :data:`HEAD_TIMEOUT_SECONDS` of the connection opening or of its
previous answer, a request's body may not stall for longer than that, and the number of
connections is capped below the process's descriptor limit. Over the cap, the
connection that has owed the server data the longest is closed, never one whose request
is being answered: connections held half-sent (slowloris) cost a caller nothing, so
they must not keep out those who send whole requests.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import logging
import os
import resource
import signal

import uvicorn
from fastapi import FastAPI

from .._targets._pool import stop_starting


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: FastAPI):
        super().__init__(config)
        self._app = app

    def handle_exit(self, sig, frame) -> None:
        super().handle_exit(sig, frame)
        stop_starting()  # the signal may have ended the workers too: replace none
        # A signal handler runs between two bytecodes of the loop's own thread, maybe
        # inside the feed's lock: the feed is closed by the loop, not from here.
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        loop.call_soon_threadsafe(self._app.state.feed.close)


class Interrupted(Exception):
    """SIGTERM, turned into an exception so that the caller's cleanup runs."""


def _interrupted(sig, frame) -> None:
    raise Interrupted


def run(app: FastAPI, *, host: str, port: int, log_level: str) -> None:
    """Serve ``app`` until a signal; returns (never a traceback) once it has stopped.

    uvicorn raises the signal again after its own shutdown: SIGINT as
    KeyboardInterrupt, SIGTERM through the handler set here, both caught."""
    # qnb's own log (requests and job transitions at INFO, on "qnb.server") at the
    # level of uvicorn's.
    logging.basicConfig(format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    logging.getLogger("qnb").setLevel(log_level.upper())
    limit = _raise_descriptor_limit()
    gate = _Gate(cap=connection_cap(limit), head_timeout=HEAD_TIMEOUT_SECONDS)
    logging.getLogger("qnb.server").info(
        "at most %d connections (descriptor limit %d)", gate.cap, limit)
    config = uvicorn.Config(
        app, host=host, port=port, log_level=log_level, access_log=False,
        timeout_graceful_shutdown=2, backlog=ACCEPT_BURST,
        http=guarded_protocol(_http_protocol(), gate),
    )
    _freeze_startup_heap()
    previous = signal.signal(signal.SIGTERM, _interrupted)
    try:
        _Server(config, app).run()
    except (KeyboardInterrupt, Interrupted):
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)


def _freeze_startup_heap() -> None:
    """Keep the collector off what was made at startup (Cirq, sympy, FastAPI, the app:
    ~230,000 objects that live as long as the server).

    Python makes a full collection whenever the objects that survived grow by a quarter;
    it walks the whole heap with the GIL held, so the event loop answers nobody
    meanwhile: measured 120-210 ms in ``qnb serve`` on a shared 2-core machine (143 ms
    when quiet). Frozen, they are never walked again; collections see only what was
    made since (jobs, requests)."""
    gc.collect()
    gc.freeze()


def skip_final_collection() -> None:
    """Call once everything is closed, just before the process exits.

    The interpreter's last garbage collection walks the whole heap (Cirq, sympy,
    FastAPI: ~2 s on a busy 2-core machine) although nothing left needs finalising:
    frozen objects are not walked, so ``qnb serve`` ends in a fraction of a second."""
    gc.freeze()


# -- connections ------------------------------------------------------------------------------

#: Seconds a connection may take to send a request's head (from opening, or from its
#: previous answer), and a request's body may go without a byte. Idle keep-alive
#: connections are closed sooner, after uvicorn's ``timeout_keep_alive`` (5 s).
HEAD_TIMEOUT_SECONDS = 10.0
#: A request head above this is refused (httptools itself sets no limit).
MAX_HEAD_BYTES = 64 * 1024
#: Connections the kernel queues for accepting. The loop accepts all queued ones before
#: the cap can shed any, so they are part of the reserve below.
ACCEPT_BURST = 128
#: Descriptors kept free beyond those open at startup and the accept burst: SQLite's
#: files for new threads, replacement worker pipes, log files.
HEADROOM_DESCRIPTORS = 128
#: Connections at most whatever the descriptor limit: each costs memory too.
MAX_CONNECTIONS = 4096


def _raise_descriptor_limit() -> int:
    """Raise the soft limit on open files to the hard one (at most 65,536: the cap
    needs no more); returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if wanted > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):  # some sandboxes refuse: keep the old limit
            pass
    return soft


def connection_cap(limit: int) -> int:
    """How many connections fit under ``limit`` descriptors with the reserve kept."""
    try:
        in_use = len(os.listdir("/proc/self/fd"))
    except OSError:  # not Linux: assume a server's usual count at startup
        in_use = 64
    return max(8, min(MAX_CONNECTIONS, limit - in_use - ACCEPT_BURST - HEADROOM_DESCRIPTORS))


class _Gate:
    """The open connections of a server, and which of them owe it data.

    A connection owes data from opening until its request's head is in, and again after
    each answer (head deadline, not extended by data), and while its request's body is
    arriving (idle deadline, extended by each chunk). Owing connections are kept oldest
    first: over the cap, the oldest is closed."""

    def __init__(self, *, cap: int, head_timeout: float):
        self.cap = cap
        self.head_timeout = head_timeout
        self._open: set = set()
        self._owing: collections.OrderedDict = collections.OrderedDict()  # conn -> timer

    @property
    def open_count(self) -> int:
        return len(self._open)

    def opened(self, conn) -> None:
        self._open.add(conn)
        self.owes(conn)
        while len(self._open) > self.cap:
            victim = next(iter(self._owing), conn)
            self.forget(victim)
            victim.drop()

    def owes(self, conn, *, restart: bool = True) -> None:
        """``conn`` owes data; its deadline starts now unless it already owes and
        ``restart`` is false."""
        timer = self._owing.pop(conn, None)
        if timer is not None and not restart:
            self._owing[conn] = timer
            return
        if timer is not None:
            timer.cancel()
        self._owing[conn] = asyncio.get_running_loop().call_later(self.head_timeout, conn.drop)

    def settled(self, conn) -> None:
        """``conn``'s request is in: it is being answered and owes nothing."""
        timer = self._owing.pop(conn, None)
        if timer is not None:
            timer.cancel()

    def forget(self, conn) -> None:
        self.settled(conn)
        self._open.discard(conn)


def _http_protocol() -> type:
    """uvicorn's own choice ("auto"): httptools when installed, else h11."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        return HttpToolsProtocol
    except ImportError:
        from uvicorn.protocols.http.h11_impl import H11Protocol

        return H11Protocol


def guarded_protocol(base: type, gate: _Gate) -> type:
    """``base`` (a uvicorn HTTP protocol) reporting to ``gate``.

    Both uvicorn protocols make a new ``cycle`` when a request's head is complete and
    mark it ``response_complete`` once answered; ``cycle.more_body`` says whether its
    body is still arriving. Nothing else of theirs is relied on."""

    class Guarded(base):
        _head_bytes = 0

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            gate.opened(self)

        def connection_lost(self, exc) -> None:
            gate.forget(self)
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            cycle = self.cycle
            if self.transport.is_closing():
                return
            if cycle is None or cycle.response_complete:  # still owing a head
                # (Not the rest of a body answered before it was read: uvicorn skips
                # that, and the head deadline still bounds it.)
                if cycle is None or not cycle.more_body:
                    self._head_bytes += len(data)
                    if self._head_bytes > MAX_HEAD_BYTES:
                        self.drop()
            elif cycle.more_body:
                gate.owes(self, restart=True)
            else:
                gate.settled(self)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            cycle = self.cycle
            if not self.transport.is_closing() and (cycle is None or cycle.response_complete):
                self._head_bytes = 0
                gate.owes(self)

        def drop(self) -> None:
            """Close now: a deadline passed, or the cap needs the room."""
            gate.forget(self)
            if not self.transport.is_closing():
                self.transport.close()

    Guarded.__name__ = Guarded.__qualname__ = f"Guarded{base.__name__}"
    return Guarded
