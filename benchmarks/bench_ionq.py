"""200 IonQ jobs in flight against the stand-in of IonQ's API (tests/ionq_standin.py, in
its own process): the kernel's CPU per followed job, and the time from the stand-in
marking a job completed to qnb knowing it (goal: p50 <= 1.5 s).

    python benchmarks/bench_ionq.py [--jobs 200] [--run-seconds 4] [--poll-seconds 1]

Runs twice: with the target's poller as shipped (IonQ's job listing once more than a few
jobs are followed) and reading every job by id each round (as a poll per job would).
What bounds the latency: the poll interval (``poll_seconds``, 1 s like cirq-ionq's own
``results()`` polling), plus one round of requests; IonQ pushes nothing. The loop and
its figures: benchmarks/_vendor_bench.py.
"""

from __future__ import annotations

import _vendor_bench as vendor_bench
import qnb
from qnb._targets import _ionq

KEY = "bench-key"


def register(name: str, url: str, poll_seconds: float):
    return qnb.register_target(name, "ionq", api_key=KEY, remote_host=url, poll_seconds=poll_seconds,
                               backend="qpu.aria-1")  # fmt: skip


BENCH = vendor_bench.VendorBench(
    vendor="ionq",
    standin_options=("--key", KEY),
    register=register,
    modes=vendor_bench.shipped_and_one_by_one("listing", "GET per job", _ionq, "GET_EACH_UP_TO"),
    unset=("IONQ_API_KEY",),
    remote_key=lambda remote_id: remote_id.partition("|")[0],  # "id|batch|backend"
    requests_label="requests_to_ionq",
    created_label="created_at_ionq",
)

if __name__ == "__main__":
    vendor_bench.main(BENCH, __doc__)
