"""Every error qnb raises on purpose subclasses :class:`QnbError`.

Messages name the problem and the fix: they are read by a physicist in a notebook,
not by a log parser.
"""

from __future__ import annotations


class QnbError(Exception):
    """Base class of all qnb errors."""


class InvalidCircuitError(QnbError, ValueError):
    """The circuits given to submit are not usable (type, labels, measurements, QASM)."""


class InvalidOptionError(QnbError, ValueError):
    """An option such as ``shots`` is out of range."""


class DeviceValidationError(QnbError, ValueError):
    """A circuit does not fit the target device (qubits, connectivity, native gates)."""


class UnknownTargetError(QnbError, KeyError):
    """No target of that name is registered."""

    def __str__(self) -> str:  # KeyError would wrap the message in quotes
        return str(self.args[0]) if self.args else ""


class UnknownJobError(QnbError, KeyError):
    """No job with that id in the store."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class QueueError(QnbError):
    """A queue operation cannot be done (position out of range, job not queued)."""


class QueueConflictError(QueueError):
    """``remove_by_position(..., expected_id=...)`` found a different job there."""


class JobFailedError(QnbError):
    """The job failed and has no completed item to return."""


class JobCancelledError(QnbError):
    """The job was cancelled before any item completed."""


class JobNotFinishedError(QnbError):
    """Results were asked for before the job finished."""


class ExecutionCancelledError(QnbError):
    """A polling loop of :class:`AsyncJobBackend` was ended by its cancellation event."""


class QnbWarning(UserWarning):
    """Something the user should know that is not an error (e.g. interrupted jobs found)."""
