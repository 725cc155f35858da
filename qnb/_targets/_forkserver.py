"""Imported by the forkserver only: :func:`._pool.start_forked` puts it first in the
forkserver's preload list. Do not import it anywhere else: the process that imports it
ignores Ctrl-C.

The forkserver's children start with the SIGINT handler the forkserver had after its
preloads. With this module that handler is "ignore", so a worker ignores Ctrl-C from its
first instruction. Before, a worker started in the instant of a Jupyter "interrupt"
(SIGINT to the kernel's whole process group) died of KeyboardInterrupt before
``init_worker`` could make it ignore SIGINT, and its items failed."""

import signal

signal.signal(signal.SIGINT, signal.SIG_IGN)
