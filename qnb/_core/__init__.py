"""The job core: what keeps jobs and their state, in small modules of one concern each.

- :mod:`._ownership` — which process runs which job (owner lock files), what becomes of
  a dead owner's jobs, and where the store lives. Light: no Cirq, so the command line
  reads jobs in a fraction of a second.

The :class:`~qnb._manager.JobManager` puts them together.
"""
