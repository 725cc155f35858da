"""A target for ``_pool.start_forked`` that reports how the new process started (light to
import: the forkserver imports it to run it)."""

import signal


def report_sigint(conn) -> None:
    """Send whether SIGINT was ignored when the process began, before anything of qnb ran."""
    conn.send(signal.getsignal(signal.SIGINT) is signal.SIG_IGN)
    conn.close()


def wait_until_killed(conn) -> None:
    """Stay until a signal ends the process (or the other end closes)."""
    conn.send("ready")
    try:
        conn.recv()
    except EOFError:
        pass
