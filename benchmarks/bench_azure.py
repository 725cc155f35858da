"""200 Azure Quantum jobs in flight against the stand-in of a workspace and its storage
(tests/azure_standin.py, in its own process): the kernel's CPU per followed job, and the
time from the stand-in marking a job completed to qnb knowing it (goal: p50 <= 1.5 s).

    python benchmarks/bench_azure.py [--jobs 200] [--run-seconds 4] [--poll-seconds 1]

Runs twice: with the target as shipped (one listing of the target's unfinished jobs once
more than a few are followed, then each finished job read once by id) and reading every
job by id each round. What bounds the latency: the poll interval (``poll_seconds``), one
round of requests, and the finished job's reads (its details, a SAS for its output, the
output blob); Azure pushes nothing. The loop and its figures: benchmarks/_vendor_bench.py.
"""

from __future__ import annotations

import _vendor_bench as vendor_bench
import qnb
from qnb._targets import _azure
from azure_standin import GROUP, LOCATION, SUBSCRIPTION, WORKSPACE

KEY = "bench-key"
CONNECTION_STRING = (f"SubscriptionId={SUBSCRIPTION};ResourceGroupName={GROUP};WorkspaceName={WORKSPACE};"
                     f"ApiKey={KEY};QuantumEndpoint=https://{LOCATION}.quantum.azure.com/;")  # fmt: skip


def register(name: str, url: str, poll_seconds: float):
    return qnb.register_target(name, "azure", backend="ionq.qpu.aria-1", connection_string=CONNECTION_STRING,
                               endpoint=url + "/", poll_seconds=poll_seconds)  # fmt: skip


BENCH = vendor_bench.VendorBench(
    vendor="azure",
    standin_options=("--key", KEY),
    register=register,
    modes=vendor_bench.shipped_and_one_by_one("listing", "GET per job", _azure, "GET_EACH_UP_TO"),
    requests_label="requests_to_azure",
)

if __name__ == "__main__":
    vendor_bench.main(BENCH, __doc__)
