"""200 Braket tasks in flight against the stand-in of Braket's API and S3
(tests/braket_standin.py, in its own process), through the real amazon-braket-sdk and
boto3: the kernel's CPU per followed job, and the time from the stand-in marking a task
completed to qnb knowing it (goal: p50 <= 1.5 s).

    python benchmarks/bench_braket.py [--jobs 200] [--run-seconds 4] [--poll-seconds 1]

Runs twice: with the target's follower as shipped (one search for the device's unfinished
tasks once more than a few are followed; finished ones read by ARN) and reading every
task by ARN each round. What bounds the latency: the poll interval plus one round of
requests, then the task's results.json from S3; Braket pushes nothing. The loop and its
figures: benchmarks/_vendor_bench.py.
"""

from __future__ import annotations

import _vendor_bench as vendor_bench
import qnb
from qnb._targets import _braket
from braket_standin import SV1, BraketStandIn


def register(name: str, url: str, poll_seconds: float):
    return qnb.register_target(name, "braket", device=SV1, s3_destination="s3://bench/tasks",
                               poll_seconds=poll_seconds)  # fmt: skip


def boto3_env(url: str) -> dict[str, str]:
    """boto3's own endpoint variables, pointing at the stand-in, and its dummy key."""
    stand = BraketStandIn()
    stand.port = int(url.rpartition(":")[2])
    return stand.env()


BENCH = vendor_bench.VendorBench(
    vendor="braket",
    register=register,
    modes=vendor_bench.shipped_and_one_by_one("search", "GET per task", _braket, "READ_EACH_UP_TO"),
    env=boto3_env,
    standin_jobs="tasks",
    requests_label="requests_to_aws",
    created_label="tasks_created",
)

if __name__ == "__main__":
    vendor_bench.main(BENCH, __doc__)
