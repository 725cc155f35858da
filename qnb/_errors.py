"""Every error qnb raises on purpose subclasses :class:`QnbError`, and all live here.

Messages name the problem and the fix: they are read by a physicist in a notebook,
not by a log parser. Each class carries a stable ``code`` and the HTTP ``http_status``
a queue server answers with; the server sends ``{"detail", "code"}`` and the client
turns the code back into the same class through :func:`error_for_code` (one table,
used by both sides, never a match on the message's words).
"""

from __future__ import annotations

from typing import ClassVar


class QnbError(Exception):
    """Base class of all qnb errors."""

    code: ClassVar[str] = "qnb_error"
    http_status: ClassVar[int] = 400
    #: Whether running the same job again may help (interrupted runs, device or network
    #: faults): messages suggest ``resubmit`` only then.
    retryable: ClassVar[bool] = False

    def __init__(self, message: str = "", *, status: int | None = None):
        super().__init__(message)
        #: The HTTP status a server answered with (client side), else the class's own.
        self.status = status if status is not None else self.http_status

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if "code" in cls.__dict__:
            if cls.code in _BY_CODE:
                raise TypeError(f"error code {cls.code!r} is used twice")
            _BY_CODE[cls.code] = cls

    def __str__(self) -> str:  # KeyError subclasses would wrap the message in quotes
        return str(self.args[0]) if self.args else ""


_BY_CODE: dict[str, type[QnbError]] = {"qnb_error": QnbError}


def error_for_code(code: str | None, message: str, *, status: int | None = None) -> QnbError:
    """The error a server's ``{"detail", "code"}`` answer stands for (client side)."""
    cls = _BY_CODE.get(code or "")
    if cls is None:
        # An older or newer server: its status still says what kind of failure it is.
        cls = _BY_STATUS.get(status or 0, RemoteError)
    return cls(message, status=status)


# -- what the user gave -----------------------------------------------------------------


class InvalidCircuitError(QnbError, ValueError):
    """The circuits given to submit are not usable (type, labels, measurements, QASM)."""

    code, http_status = "invalid_circuit", 422


class InvalidOptionError(QnbError, ValueError):
    """An option such as ``shots`` is out of range."""

    code, http_status = "invalid_option", 422


class DeviceValidationError(QnbError, ValueError):
    """A circuit does not fit the target device (qubits, connectivity, native gates)."""

    code, http_status = "device_validation", 422


class LimitExceededError(QnbError, ValueError):
    """A job is larger than a target or server allows (items, qubits, shots, memory)."""

    code, http_status = "limit_exceeded", 422


class UnknownTargetError(QnbError, KeyError):
    """No target of that name is registered."""

    code, http_status = "unknown_target", 404


class UnknownJobError(QnbError, KeyError):
    """No job with that id in the store."""

    code, http_status = "unknown_job", 404


class CostLimitError(QnbError):
    """A job's estimated cost is above ``max_cost`` or its target's ``budget`` (or no
    price is known where a limit asks for one): nothing was submitted."""

    code, http_status = "cost_limit", 402


# -- queues and jobs ----------------------------------------------------------------------


class QueueError(QnbError):
    """A queue operation cannot be done (position out of range, job not queued)."""

    code, http_status = "queue_error", 409


class QueueConflictError(QueueError):
    """``remove_by_position(..., expected_id=...)`` found a different job there."""

    code, http_status = "queue_conflict", 409


class JobStateError(QnbError):
    """The job is not in a state that allows this (e.g. resubmitting a running job)."""

    code, http_status = "job_state", 409


class DuplicateJobError(QnbError):
    """A job with this id, or this idempotency key for another submission, exists."""

    code, http_status = "duplicate_job", 409


class JobFailedError(QnbError):
    """The job failed and has no completed item to return."""

    code, http_status = "job_failed", 409


class JobCancelledError(QnbError):
    """The job was cancelled before any item completed."""

    code, http_status = "job_cancelled", 409


class JobNotFinishedError(QnbError):
    """Results were asked for before the job finished."""

    code, http_status = "job_not_finished", 409


class ExecutionCancelledError(QnbError):
    """A polling loop of :class:`AsyncJobBackend` was ended by its cancellation event."""

    code, http_status = "execution_cancelled", 409


class InvalidTransitionError(QnbError):
    """A status change that the lifecycle table does not allow (a bug, not user error)."""

    code, http_status = "invalid_transition", 500


# -- remote targets and the queue server ----------------------------------------------------


class RemoteError(QnbError):
    """A queue server or a vendor's cloud refused a request, or could not be reached."""

    code, http_status = "remote_error", 502
    retryable = True


class RemoteAuthError(RemoteError, PermissionError):
    """401 (no valid token) or 403 (another user's job, or an admin's action)."""

    code, http_status = "forbidden", 403
    retryable = False


class NotAuthenticatedError(RemoteAuthError):
    """No token, or a token the server does not know."""

    code, http_status = "unauthenticated", 401


class ServerUnreachableError(RemoteError, ConnectionError):
    """No answer from the server within the retry time."""

    code, http_status = "server_unreachable", 503


class VendorRejectedError(RemoteError):
    """A vendor's cloud (IonQ) refused a request for a reason a retry will not change
    (a 4xx other than 401/404: a circuit or option it does not take)."""

    code, http_status = "vendor_rejected", 502
    retryable = False


class HostNotAllowedError(QnbError):
    """A server without a users file answers only requests addressed to a loopback
    name (a page elsewhere could otherwise reach it through DNS rebinding)."""

    code, http_status = "host_not_allowed", 421


class PayloadTooLargeError(QnbError):
    """A request body above the server's limit."""

    code, http_status = "payload_too_large", 413


class UsersFileError(QnbError):
    """The server's users file is missing, unreadable or malformed."""

    code, http_status = "users_file", 500


class StoreError(QnbError):
    """The job store (SQLite) cannot be read or written: names the file and the fix."""

    code, http_status = "store_error", 500
    retryable = True


_BY_STATUS: dict[int, type[QnbError]] = {
    401: NotAuthenticatedError,
    403: RemoteAuthError,
    404: UnknownJobError,
    409: QueueError,
    413: PayloadTooLargeError,
    422: InvalidOptionError,
    503: ServerUnreachableError,
}


class QnbWarning(UserWarning):
    """Something the user should know that is not an error (e.g. interrupted jobs found)."""
