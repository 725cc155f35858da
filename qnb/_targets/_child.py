"""What every process that qnb forks from its forkserver does first (the simulation
pool's workers and the queue server's circuit workers): light, so the server can import
it without qsimcirq."""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import threading

_PR_SET_NAME = 15


def init_worker(name: str) -> None:
    """Run in each new worker process; ``name`` is what ``ps`` and ``top`` call it
    (Linux; at most 15 characters), not the forkserver's long command line.

    Jupyter interrupts a kernel by signalling its whole process group, workers
    included: a worker must not die when the user interrupts a cell (their jobs go
    on); a server's workers leave Ctrl-C to the server. Shutdown still ends workers,
    by SIGTERM or by their parent's pipe closing.
    """
    with contextlib.suppress(OSError, AttributeError):  # not Linux: keep the old name
        ctypes.CDLL(None).prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A worker waits for work on a pipe whose write end it holds itself, so it never
    # notices when its kernel is killed, and a busy one reads no pipe at all: without
    # this it would live on (with the forkserver, which it keeps alive), ~200 MB each.
    # The parent sentinel is a pipe the parent holds, closed however the parent ends.
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(
            target=_exit_with, args=(parent,), name="qnb-orphan-watch", daemon=True
        ).start()


def _exit_with(parent: multiprocessing.process.BaseProcess) -> None:
    parent.join()  # returns once the parent process has ended, however it ended
    os._exit(0)
