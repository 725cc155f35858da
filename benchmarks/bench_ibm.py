"""200 IBM Quantum jobs in flight against the stand-in of IBM's APIs (tests/ibm_standin.py,
in its own process), through the real qiskit-ibm-runtime client: the kernel's CPU per
followed job, and the time from the stand-in marking a job completed to qnb knowing it
(goal: p50 <= 1.5 s).

    python benchmarks/bench_ibm.py [--jobs 200] [--run-seconds 30] [--poll-seconds 1]

What bounds the latency: the poll interval (``poll_seconds``), plus one round of reads
(one GET per followed job, on the target's threads), plus reading the finished job's
usage and results; IBM pushes nothing. More than a few followed jobs are read through
IBM's listing of unfinished jobs, one request a round. The submit time per job includes
Qiskit's transpilation, the client-side Sampler's preparation of the program and the
client's four requests per creation (backends, usage, backend status, the POST); jobs
run ``--run-seconds`` at the stand-in, long enough for all of them to be in flight. The
loop and its figures: benchmarks/_vendor_bench.py.
"""

from __future__ import annotations

import _vendor_bench as vendor_bench
import qnb
from ibm_standin import BACKEND, CRN, client_env

KEY = "bench-key"


def register(name: str, url: str, poll_seconds: float):
    return qnb.register_target(name, "ibm", backend=BACKEND, token=KEY, instance=CRN, api_url=f"{url}/api/v1",
                               poll_seconds=poll_seconds)  # fmt: skip


BENCH = vendor_bench.VendorBench(
    vendor="ibm",
    standin_options=("--key", KEY),
    register=register,
    env=client_env,  # IBM Cloud's IAM and search hosts: the stand-in
    unset=("QISKIT_IBM_TOKEN", "QISKIT_IBM_INSTANCE"),
    requests_label="requests_to_ibm",
    created_label="created_at_ibm",
    submitters=8,  # each waits for its job's creation at IBM (four requests)
    run_seconds=30.0,  # all jobs in flight at once
)

if __name__ == "__main__":
    vendor_bench.main(BENCH, __doc__)
