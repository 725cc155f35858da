"""Widget updates keep flowing while a cell is busy: in a real kernel (jupyter_client),
read on the kernel's IOPub channel as a front end would."""

from __future__ import annotations

import time

import pytest
from jupyter_client.manager import start_new_kernel

# One worker runs this file (loadgroup): its module-scoped fixtures start once.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("widgets-kernel")]

SETUP = """
import cirq, qnb
from IPython.display import display
from qnb.notebook._widgets import card_for
q = cirq.LineQubit.range(2)
bell = cirq.Circuit(cirq.H(q[0]), cirq.CNOT(*q), cirq.measure(*q, key="m"))
qnb.submit(bell, shots=10).result(timeout=120)  # the process pool is warm
"""

SUBMIT = """
job = qnb.submit(bell, target="emulator", compile=True, shots=3000)  # ~1.5 s of device time
card = card_for(job)
monitor = qnb.monitor()
display(card, monitor)
print("COMMS", card.comm.comm_id, monitor.comm.comm_id, flush=True)
"""

# Each keeps the kernel busy until the job has ended and a second more (at most 60 s):
# the card's "completed" must reach the front end while the cell still runs.
BUSY_UNTIL_DONE = (
    "import time\n"
    "def busy(step):\n"
    "    end = time.perf_counter() + 60\n"
    "    while not job.done() and time.perf_counter() < end:\n"
    "        step()\n"
    "    end = time.perf_counter() + 1\n"
    "    while time.perf_counter() < end:\n"
    "        step()\n"
)
BUSY_CELLS = {
    "sleep": "import time; time.sleep(4)",
    "numpy": BUSY_UNTIL_DONE + (
        "import numpy as np\n"
        "a = np.random.default_rng(0).normal(size=(300, 300))\n"
        "busy(lambda: np.linalg.eigvalsh(a @ a.T))\n"
    ),
    "python loop": BUSY_UNTIL_DONE + "busy(lambda: sum(range(100)))\n",
}


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        yield kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def execute(kc, code: str, timeout: float = 120):
    """Run ``code``; return (printed text, comm messages that arrived while it ran)."""
    msg_id = kc.execute(code)
    text, comm_msgs = [], []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = kc.get_iopub_msg(timeout=timeout)
        kind = msg["msg_type"]
        if kind == "comm_msg":
            comm_msgs.append(msg["content"])
        elif msg["parent_header"].get("msg_id") != msg_id:
            continue
        elif kind == "stream":
            text.append(msg["content"]["text"])
        elif kind == "error":
            raise AssertionError("\n".join(msg["content"]["traceback"]))
        elif kind == "status" and msg["content"]["execution_state"] == "idle":
            return "".join(text), comm_msgs
    raise AssertionError(f"cell did not finish in {timeout} s: {code[:60]}")


@pytest.mark.parametrize("busy", list(BUSY_CELLS))
def test_job_updates_reach_the_front_end_during_a_busy_cell(kernel, busy):
    execute(kernel, SETUP)
    out, _ = execute(kernel, SUBMIT)
    card_comm, monitor_comm = out.split()[1:3]
    _, during = execute(kernel, BUSY_CELLS[busy])
    card_states = [
        m["data"]["state"]["job"]["status"]
        for m in during
        if m["comm_id"] == card_comm and m["data"].get("method") == "update" and "job" in m["data"]["state"]
    ]
    assert "completed" in card_states, card_states  # while the cell was still busy
    patches = [
        m["data"]["content"]
        for m in during
        if m["comm_id"] == monitor_comm and m["data"].get("method") == "custom"
    ]
    assert patches and all(p["type"] == "patch" for p in patches)
    assert any(row["status"] == "completed" for p in patches for row in p["jobs"])
