"""Costs before a job runs (issue 20): figures from qnb's price table on IonQ and Braket
targets (their real clients against the stand-ins), checked against hand-computed ones;
refusals over ``max_cost`` and a target's ``budget`` that store nothing and create no
vendor job; an unknown price (None, and refused under a limit); ``price``/``budget``
from the targets file and ``register_target``; bad input; local targets cost nothing."""

from __future__ import annotations

import math
import os
import textwrap

import cirq
import pytest

import qnb
from qnb import _prices
from qnb._features import features_of
from qnb._targets import registry
from azure_standin import GROUP, LOCATION, SUBSCRIPTION, WORKSPACE, AzureStandIn
from braket_standin import QPU, SV1, BraketStandIn, _capabilities
from conftest import wait_until
from ibm_standin import BACKEND, CRN, IBMStandIn, client_env
from ionq_standin import StandIn
from vendor_support import served, target_maker

KEY = "sk-standin-0123456789abcdef"
Q = cirq.LineQubit.range(1, 4)  # the Braket stand-in's QPU numbers its qubits from 1
BELL = cirq.Circuit(cirq.H(Q[0]), cirq.CNOT(Q[0], Q[1]), cirq.measure(Q[0], Q[1], key="m"))
#: 20 one-qubit and 40 two-qubit gates: above IonQ's minimum at 5,000 shots.
LONG = cirq.Circuit(
    [cirq.H(Q[0]), *[cirq.CNOT(Q[0], Q[1])] * 4, cirq.H(Q[0])] * 10,
    cirq.measure(Q[0], Q[1], key="m"),
)  # fmt: skip
IBM_KEY = "ibm-standin-key-0123456789abcdef"
AZURE_KEY = "azure-standin-key-0123456789"
ARIA_ARN = "arn:aws:braket:us-east-1::device/qpu/ionq/Aria-1"


@pytest.fixture(autouse=True)
def no_ambient_config(monkeypatch, tmp_path):
    """No key, credentials or targets file of the machine's: only what a test sets."""
    for variable in [v for v in os.environ if v.startswith(("AWS_", "AMZN_BRAKET"))]:
        monkeypatch.delenv(variable)
    for variable in ("IONQ_API_KEY", "CIRQ_IONQ_API_KEY", "IONQ_REMOTE_HOST", "CIRQ_IONQ_REMOTE_HOST"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("QNB_TARGETS", str(tmp_path / "no-targets.toml"))


@pytest.fixture
def ionq():
    yield from served(StandIn(KEY))


@pytest.fixture
def ionq_targets():
    """``ionq_targets(standin, **options)``: an IonQ target against the stand-in."""
    yield from target_maker("ionq", "ionq-cost", lambda standin: {
        "api_key": KEY, "remote_host": standin.url, "poll_seconds": 0.05, "call_timeout": 5.0})  # fmt: skip


@pytest.fixture
def braket(monkeypatch):
    standin = BraketStandIn()
    # IonQ Aria by its real ARN, described as the stand-in's 6-qubit chain: its price
    # is read from the ARN.
    standin.devices[ARIA_ARN] = ("Aria-1", "QPU", _capabilities(True))
    yield from served(standin, monkeypatch, BraketStandIn.env)


@pytest.fixture
def braket_targets():
    yield from target_maker("braket", "braket-cost", lambda device=SV1: {
        "device": device, "s3_destination": "s3://qnb-results/tests", "poll_seconds": 0.05,
        "call_timeout": 5.0})  # fmt: skip


@pytest.fixture
def azure():
    yield from served(AzureStandIn(AZURE_KEY))


@pytest.fixture
def azure_targets():
    connection = (f"SubscriptionId={SUBSCRIPTION};ResourceGroupName={GROUP};WorkspaceName={WORKSPACE};"
                  f"ApiKey={AZURE_KEY};QuantumEndpoint=https://{LOCATION}.quantum.azure.com/;")  # fmt: skip
    yield from target_maker("azure", "az-cost", lambda standin, backend: {
        "backend": backend, "connection_string": connection, "endpoint": standin.url + "/",
        "poll_seconds": 0.05, "call_timeout": 5.0})  # fmt: skip


@pytest.fixture
def ibm(monkeypatch, tmp_path):
    from qiskit_ibm_runtime.accounts import management

    monkeypatch.setattr(management, "_DEFAULT_ACCOUNT_CONFIG_JSON_FILE", str(tmp_path / "qiskit-ibm.json"))
    yield from served(IBMStandIn(IBM_KEY), monkeypatch, lambda stand: client_env(stand.url))


@pytest.fixture
def ibm_targets():
    yield from target_maker("ibm", "ibm-cost", lambda standin: {
        "backend": BACKEND, "token": IBM_KEY, "instance": CRN, "api_url": f"{standin.url}/api/v1",
        "poll_seconds": 0.05, "call_timeout": 5.0})  # fmt: skip


def stored(manager) -> int:
    return len(manager.store.find_jobs(limit=1000))


# -- figures --------------------------------------------------------------------------------------


def test_ionq_costs_per_gate_shot_with_its_minimum_and_the_simulator_is_free(manager, ionq, ionq_targets):
    qpu = ionq_targets(ionq, backend="qpu.aria-1")
    sim = ionq_targets(ionq, backend="simulator")
    small = qnb.estimate(BELL, target=qpu.name, shots=1000)
    # 1000 x (1 x 0.000220 + 1 x 0.000975) = 1.195, under the $97.50 minimum per circuit.
    assert (small.cost, small.currency) == (97.50, "USD")
    assert "IonQ qpu.aria-1" in small.basis and _prices.PRICES_TAKEN in small.basis
    big = qnb.estimate({"a": LONG, "b": BELL}, target=qpu.name, shots=5000)
    # LONG: 5000 x (20 x 0.000220 + 40 x 0.000975) = 22.0 + 195.0; BELL: the minimum.
    assert big.cost == pytest.approx(217.0 + 97.50)
    assert qnb.estimate(LONG, target=sim.name, shots=5000).cost == 0.0

    job = qnb.submit(LONG, target=qpu.name, shots=5000)
    assert (job.cost, job.currency) == (pytest.approx(217.0), "USD")
    assert manager.store.load_job(job.id).cost == pytest.approx(217.0)  # kept with the job
    assert job.result(timeout=30) is not None


def test_braket_costs_per_task_and_shot_and_sv1_its_billed_minimum(manager, braket, braket_targets):
    aria = braket_targets(ARIA_ARN)
    sv1 = braket_targets(SV1)
    # Two tasks: 2 x (0.30 + 100 x 0.03) = 6.60.
    job = qnb.submit({"a": BELL, "b": BELL}, target=aria.name, shots=100)
    assert (job.cost, job.currency) == (pytest.approx(6.60), "USD")
    assert "Amazon Braket ionq/aria" in qnb.estimate(BELL, target=aria.name, shots=100).basis
    # SV1: $0.075 per minute, 3 s billed at least per task: 0.00375 per small circuit.
    assert qnb.estimate([BELL] * 4, target=sv1.name, shots=1000).cost == pytest.approx(4 * 0.00375)
    wide = cirq.Circuit(cirq.H.on_each(cirq.LineQubit.range(21)), cirq.measure(*cirq.LineQubit.range(21)))
    unknown = qnb.estimate(wide, target=sv1.name, shots=10)
    assert unknown.cost is None and "over 20 qubits" in unknown.basis
    assert job.result(timeout=30) is not None


def test_azure_quantinuum_costs_its_own_units_and_a_budget_holds_them(manager, azure, azure_targets):
    emulator = azure_targets(azure, "quantinuum.sim.h2-1e")
    emulator_budget = azure_targets(azure, "quantinuum.sim.h2-1e", budget=10)
    # eHQC = 5 + 100 x (1 + 10 x 1 + 5 x (2 preparations + 2 measured qubits)) / 5000 = 5.62.
    job = qnb.submit(BELL, target=emulator.name, shots=100)
    assert (job.cost, job.currency) == (pytest.approx(5.62), "eHQC")
    qnb.submit(BELL, target=emulator_budget.name, shots=100)
    with pytest.raises(qnb.CostLimitError, match=r"budget = 10 .*: 5\.62 eHQC spent by stored jobs, this job 5\.62 eHQC"):
        qnb.submit(BELL, target=emulator_budget.name, shots=100)
    ionq = azure_targets(azure, "ionq.qpu.aria-1")
    assert qnb.estimate(BELL, target=ionq.name, shots=100).cost == 97.50
    assert stored(manager) == 2 and job.result(timeout=30) is not None
    wait_until(lambda: azure.created == 2, what="both jobs to reach Azure")


def test_ibm_costs_usage_seconds_at_its_plans_price_and_its_local_mode_nothing(manager, ibm, ibm_targets):
    default = ibm_targets(ibm)
    flex = ibm_targets(ibm, plan="flex")
    # Usage: 3 s + 1000 shots x (250 us + 3 layers x 0.5 us) = 3.2515 s.
    estimate = qnb.estimate(BELL, target=default.name, shots=1000)
    assert estimate.cost == pytest.approx(3.2515 * 96 / 60) and "pay-as-you-go plan (the default)" in estimate.basis
    job = qnb.submit(BELL, target=flex.name, shots=1000)
    assert (job.cost, job.currency) == (pytest.approx(3.2515 * 72 / 60), "USD")
    assert job.result(timeout=30) is not None
    fake = qnb.register_target("ibm-cost-fake", "ibm", backend="fake_manila", plan="flex")
    local = qnb.estimate(BELL, target=fake.name, shots=1000)
    assert local.cost == 0.0 and local.basis.endswith("IBM Quantum's local mode: no cost")
    fake.close()


def test_the_table_formulas_for_ibm_azure_and_gates_on_three_qubits():
    """The terms other vendors bill by, on targets read by duck typing (as qnb reads all)."""

    class Backend:
        name = "ibm_torino"

    def target(vendor, **attributes):
        return type("Target", (), {"vendor": vendor, "local": False, "name": "t", **attributes})()

    bell = [features_of(BELL)]  # 2 qubits, 1 + 1 gates, 1 measurement, depth 3
    ibm = _prices.estimate_cost(target("IBM Quantum", backend=Backend()), bell, 4096)
    seconds = 3.0 + 4096 * (250e-6 + 3 * 0.5e-6)  # IBM's own example says 4.1 s
    assert ibm.amount == pytest.approx(seconds * 96 / 60, abs=1e-6) and "pay-as-you-go" in ibm.basis
    hqc = _prices.estimate_cost(target("Azure Quantum", target_name="quantinuum.qpu.h2-1"), bell, 1000)
    # HQC = 5 + C (N1q + 10 N2q + 5 Nm) / 5000, Nm = 2 preparations + 2 measured qubits.
    assert (hqc.amount, hqc.currency) == (pytest.approx(5 + 1000 * (1 + 10 + 5 * 4) / 5000), "HQC")
    toffoli = [features_of(cirq.Circuit(cirq.CCX(*Q), cirq.measure(*Q)))]
    aria = _prices.estimate_cost(target("Azure Quantum", target_name="ionq.qpu.aria-1"), toffoli, 100_000)
    assert aria.amount == pytest.approx(100_000 * 6 * 0.000975)  # 6 x (3 - 2) two-qubit gates
    premium = target("IBM Quantum", backend=Backend())
    _prices.configure(premium, _prices.check_settings(None, None, "premium", target="t", where="here"))
    assert _prices.estimate_cost(premium, bell, 10).amount is None


def test_a_local_target_costs_nothing(manager):
    estimate = qnb.estimate(BELL, target="sim", shots=1000)
    assert (estimate.cost, estimate.currency) == (0.0, None) and "local: no cost" in estimate.basis
    job = qnb.submit(BELL, target="sim", shots=100, max_cost=0)
    assert job.cost == 0.0 and job.result(timeout=30) is not None


# -- refusals -------------------------------------------------------------------------------------


def test_over_max_cost_is_refused_naming_the_estimate_the_limit_and_the_way_out(manager, ionq, ionq_targets):
    qpu = ionq_targets(ionq, backend="qpu.aria-1")
    with pytest.raises(qnb.CostLimitError, match=r"\$97\.50, above max_cost=50 .*raise max_cost, or submit fewer"):
        qnb.submit(BELL, target=qpu.name, shots=100, max_cost=50)
    assert stored(manager) == 0 and ionq.created == 0
    job = qnb.submit(BELL, target=qpu.name, shots=100, max_cost=97.50)  # at the limit: taken
    assert job.cost == 97.50 and stored(manager) == 1


def test_over_budget_is_refused_naming_spent_this_job_the_budget_and_where(manager, ionq, ionq_targets):
    qpu = ionq_targets(ionq, backend="qpu.aria-1", budget=250)
    first = qnb.submit(BELL, target=qpu.name, shots=100)
    second = qnb.submit(BELL, target=qpu.name, shots=100)
    wait_until(lambda: ionq.created == 2, what="both jobs to reach IonQ")
    with pytest.raises(qnb.CostLimitError) as refused:
        qnb.submit(BELL, target=qpu.name, shots=100)
    message = str(refused.value)
    assert f"budget = 250 for target {qpu.name!r}" in message and "qnb.register_target" in message
    assert "$195.00 spent" in message and "this job $97.50" in message and "raise the budget" in message
    assert stored(manager) == 2 and ionq.created == 2
    assert {first.result(timeout=30) is not None, second.result(timeout=30) is not None} == {True}


def test_a_resubmission_is_priced_and_held_to_the_budget(manager, ionq, ionq_targets):
    qpu = ionq_targets(ionq, backend="qpu.aria-1", budget=200)
    first = qnb.submit(BELL, target=qpu.name, shots=100)
    assert first.result(timeout=30) is not None
    again = first.resubmit()
    assert (again.cost, again.currency) == (97.50, "USD")
    assert again.result(timeout=30) is not None
    with pytest.raises(qnb.CostLimitError, match=r"\$195\.00 spent by stored jobs, this job \$97\.50"):
        again.resubmit()
    assert stored(manager) == 2 and ionq.created == 2


def test_an_unknown_price_is_none_and_a_limit_refuses_it_rather_than_guess(manager, braket, braket_targets):
    chain = braket_targets(QPU)  # the stand-in's own QPU: in no price table
    estimate = qnb.estimate(BELL, target=chain.name, shots=100)
    assert estimate.cost is None and estimate.currency is None
    assert "no price known for Amazon Braket standin/chain" in estimate.basis and "set price" in estimate.basis
    with pytest.raises(qnb.CostLimitError, match=r"max_cost=1000 is set and the cost .* is unknown: no price known"):
        qnb.submit(BELL, target=chain.name, shots=100, max_cost=1000)
    budgeted = braket_targets(QPU, budget=10)
    with pytest.raises(qnb.CostLimitError, match=r"budget = 10 .* the cost of this job is unknown"):
        qnb.submit(BELL, target=budgeted.name, shots=100)
    assert stored(manager) == 0 and braket.created == 0
    priced = braket_targets(QPU, price={"per_task": 0.5, "per_shot": 0.001, "currency": "EUR"})
    assert qnb.submit(BELL, target=priced.name, shots=100).cost == pytest.approx(0.6)
    assert (job := qnb.jobs(target=priced.name)[0]).currency == "EUR" and job.result(timeout=30)


# -- overrides from the targets file ------------------------------------------------------------


def test_price_and_budget_from_the_targets_file(manager, ionq, monkeypatch, tmp_path):
    path = tmp_path / "targets.toml"
    path.write_text(textwrap.dedent(f"""
        [targets.filed]
        kind = "ionq"
        backend = "qpu.aria-1"
        remote_host = "{ionq.url}"
        api_key_env = "MY_IONQ_KEY"
        poll_seconds = 0.05
        price = {{minimum = 12.4166}}   # error mitigation off
        budget = 20.0
    """))  # fmt: skip
    monkeypatch.setenv("QNB_TARGETS", str(path))
    monkeypatch.setenv("MY_IONQ_KEY", KEY)
    registry.rescan()
    try:
        estimate = qnb.estimate(BELL, target="filed", shots=100)
        assert estimate.cost == pytest.approx(12.4166) and f"price set in {path}" in estimate.basis
        qnb.submit(BELL, target="filed", shots=100)
        with pytest.raises(qnb.CostLimitError, match=rf"budget = 20 for target 'filed' \(in {path}\): \$12\.42 spent"):
            qnb.submit(BELL, target="filed", shots=100)
        assert stored(manager) == 1
        wait_until(lambda: ionq.created == 1, what="the job to reach IonQ")
    finally:
        if "filed" in registry.all():
            registry.get("filed").close()
        registry.unregister("filed")
        registry.rescan()


def test_a_kind_registered_by_name_takes_the_files_cost_settings(manager, ionq, monkeypatch, tmp_path):
    path = tmp_path / "targets.toml"
    path.write_text(f'[targets.named]\nkind = "ionq"\nbackend = "qpu.aria-1"\nremote_host = "{ionq.url}"\n'
                    f'api_key = "{KEY}"\nbudget = 50\n')  # fmt: skip
    monkeypatch.setenv("QNB_TARGETS", str(path))
    target = qnb.register_target("named", "ionq")
    try:
        with pytest.raises(qnb.CostLimitError, match=rf"budget = 50 for target 'named' \(in {path}\)"):
            qnb.submit(BELL, target="named", shots=10)
    finally:
        target.close()


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("max_cost", [-1, math.nan, math.inf, "10", True])
def test_a_bad_max_cost_is_refused_and_nothing_stored(manager, max_cost):
    with pytest.raises(qnb.InvalidOptionError, match="max_cost must be a number from 0"):
        qnb.submit(BELL, target="sim", shots=10, max_cost=max_cost)
    assert stored(manager) == 0


@pytest.mark.parametrize("options, expected", [
    ({"price": {"per_gate": 0.1}}, r"unknown key 'per_gate'; the keys are per_task, per_shot"),
    ({"price": {"per_shot": -0.1}}, r"price.per_shot .* must be a number from 0, got -0.1"),
    ({"price": {"per_shot": "0.1"}}, r"price.per_shot .* must be a number from 0, got '0.1'"),
    ({"price": {"per_shot": math.nan}}, r"price.per_shot .* must be a number from 0"),
    ({"price": {"currency": 3}}, r"price.currency .* must be a name such as 'USD'"),
    ({"price": "cheap"}, r"price for target 'bad' .* must be a table"),
    ({"budget": -5}, r"budget for target 'bad' .* must be a number from 0 .*budget = 100.0"),
    ({"budget": "lots"}, r"budget for target 'bad'"),
    ({"plan": "pay-as-you-go"}, r"plan applies to IBM Quantum targets \(kind 'ibm'\) only"),
])  # fmt: skip
def test_bad_cost_options_are_refused_at_register_naming_the_target_and_the_fix(manager, options, expected):
    with pytest.raises(qnb.InvalidOptionError, match=expected) as refused:
        qnb.register_target("bad", "density", **options)
    assert "qnb.register_target('bad', ...)" in str(refused.value)
    assert "bad" not in qnb.targets()


def test_an_unknown_ibm_plan_is_refused_before_any_account_is_opened(manager):
    with pytest.raises(qnb.InvalidOptionError, match=r"unknown plan 'gold' for target 'ibm'.*plans: pay-as-you-go, flex"):
        qnb.register_target("ibm", "ibm", backend="ibm_torino", plan="gold")
    assert "ibm" not in qnb.targets()


def test_a_bad_price_table_in_the_targets_file_refuses_that_target_naming_the_file(manager, monkeypatch, tmp_path):
    path = tmp_path / "targets.toml"
    path.write_text('[targets.broken]\nkind = "density"\nprice = {per_gate = 1}\n'
                    '[targets.fine]\nkind = "density"\nprice = {per_shot = 0.001}\nbudget = 1.0\n')  # fmt: skip
    monkeypatch.setenv("QNB_TARGETS", str(path))
    registry.rescan()
    try:
        listed = qnb.targets()["broken"]
        assert "broken" in listed.description and "per_gate" in listed.description
        with pytest.raises(qnb.InvalidOptionError, match=rf"target 'broken' in {path} has an unknown key 'per_gate'"):
            qnb.submit(BELL, target="broken", shots=10)
        # A local target given a price is priced: 1 task x 10 shots x 0.001.
        assert qnb.estimate(BELL, target="fine", shots=10).cost == pytest.approx(0.01)
        with pytest.raises(qnb.CostLimitError, match="budget = 1 for target 'fine'"):
            qnb.submit(BELL, target="fine", shots=2000)
        assert stored(manager) == 0
    finally:
        registry.unregister("broken")
        registry.unregister("fine")
        registry.rescan()
