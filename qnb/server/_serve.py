"""Running the app with uvicorn until Ctrl-C or SIGTERM, and stopping promptly.

Clients hold long-polls (``/v1/events``) open for up to a minute. Left alone, uvicorn
would wait for them until its graceful timeout and then cancel them (an error line and
a ``CancelledError`` traceback); here the first signal also ends every long-poll, so
they answer at once and the server stops within a fraction of a second.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal

import uvicorn
from fastapi import FastAPI


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: FastAPI):
        super().__init__(config)
        self._app = app

    def handle_exit(self, sig, frame) -> None:
        super().handle_exit(sig, frame)
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
    config = uvicorn.Config(
        app, host=host, port=port, log_level=log_level, access_log=False,
        timeout_graceful_shutdown=2,
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
