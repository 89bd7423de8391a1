"""The stand-ins remember across restarts (issue 10 point 21): the HIS simulator's records and counters and the
WeChat sandbox's subscriptions and messages are kept in DATA_DIR, so a restarted demo neither hands out an MRN
twice nor forgets who subscribed."""

from __future__ import annotations

from app import create_app
from appkeys import HIS_SIMULATOR, WECHAT_SANDBOX
from his import profile
from his.simulator import SimulatorState
from models import HisSync, Referral
from outbox import run_due_jobs
from referrals.state_machine import Status
from standin_state import DurableState
from tests.referral_support import Desk
from tests.test_his_jobs import FAST
from wechat.sandbox.state import STATE_FILE as SANDBOX_FILE
from wechat.sandbox.state import SandboxState


async def _accept_one(client) -> Referral:
    """A new patient referred DONGGUAN → SUBEI and accepted; his.admit run to its end."""
    desk = await Desk.open(client) if not await Referral.exists() else Desk(client)
    body = await desk.drive(Status.SCHEDULED)
    await run_due_jobs(client.server.app, FAST)
    return await Referral.get(public_id=body["id"])


def _mrn_of(app, referral: Referral) -> str:
    store = app[HIS_SIMULATOR].store("SUBEI")
    [encounter] = [e for e in store.all("Encounter")
                   if any(i.get("value") == referral.code for i in e.get("identifier") or [])]
    patient = store.read("Patient", encounter["subject"]["reference"].split("/")[1])
    return next(i["value"] for i in patient["identifier"] if i["system"] == profile.MRN_SYSTEM)


async def test_a_restart_between_two_accepted_referrals_keeps_both_certificate_jobs_alive(aiohttp_client, settings):
    first_client = await aiohttp_client(create_app(settings))
    first = await _accept_one(first_client)
    assert first.his_sync == HisSync.DONE
    first_mrn = _mrn_of(first_client.server.app, first)
    await first_client.close()  # `make run` stopped ...

    second_client = await aiohttp_client(create_app(settings))  # ... and started again on the same DATA_DIR
    app = second_client.server.app
    assert _mrn_of(app, first) == first_mrn  # the restarted HIS still knows the first admission
    second = await _accept_one(second_client)
    assert second.his_sync == HisSync.DONE, "the second certificate job died"
    assert second.admission_certificate_no and second.admission_certificate_no != first.admission_certificate_no
    assert _mrn_of(app, second) != first_mrn
    assert (await Referral.get(id=first.id)).his_sync == HisSync.DONE


async def test_the_simulator_on_its_own_never_hands_out_an_mrn_twice_across_restarts(tmp_path):
    from his.simulator.store import HisStore

    def register(state: SimulatorState, name: str) -> str:
        stored, _ = state.store("XH").create("Patient", {"resourceType": "Patient", "name": [{"text": name}]}, None)
        return next(i["value"] for i in stored["identifier"] if i["system"] == profile.MRN_SYSTEM)

    state = SimulatorState()
    state.open_state(tmp_path)
    seeded = len(state.store("XH").all("Patient"))
    mrn = register(state, "甲某")
    state.close_state()
    again = SimulatorState()
    again.open_state(tmp_path)
    assert len(again.store("XH").all("Patient")) == seeded + 1  # restored, not seeded again
    assert register(again, "乙某") != mrn
    again.close_state()
    fresh = HisStore("XH", report_delay=lambda: 0.0)  # without a state file: memory only, as before
    assert len(fresh.all("Patient")) == seeded


async def test_the_sandbox_keeps_subscriptions_tokens_and_messages_across_a_restart(tmp_path):
    state = SandboxState("wx-app", "secret")
    state.open_state(tmp_path)
    state.register_template("tpl-1", ["thing1"])
    state.grant("o-approver", "tpl-1", count=2)
    token = state.stable_token("wx-app", "secret")
    state.send_subscribe({"touser": "o-approver", "template_id": "tpl-1", "data": {"thing1": {"value": "待审批"}}})
    state.close_state()

    again = SandboxState("wx-app", "secret")
    again.open_state(tmp_path)
    assert again.credits("o-approver")["tpl-1"].count == 1
    again.check_token(token.value)  # still valid: the platform's cached token keeps working
    assert [m["data"] for m in again.messages(touser="o-approver")] == [{"thing1": "待审批"}]
    again.send_subscribe({"touser": "o-approver", "template_id": "tpl-1", "data": {"thing1": {"value": "超时"}}})
    assert [m["id"] for m in again.messages()] == [1, 2] and again.credits("o-approver")["tpl-1"].count == 0
    again.reset()  # a reset forgets on disk too
    again.close_state()
    third = SandboxState("wx-app", "secret")
    third.open_state(tmp_path)
    assert third.messages() == [] and third.credits("o-approver") == {}
    third.close_state()


async def test_the_embedded_sandbox_remembers_a_grant_across_an_app_restart(aiohttp_client, settings):
    client = await aiohttp_client(create_app(settings))
    resp = await client.post("/wechat-sandbox/sandbox/subscriptions",
                             json={"openid": "o-demo", "template_id": settings.wechat_template_approval,
                                   "long_term": True})
    assert resp.status in (200, 201), await resp.text()
    await client.close()
    again = await aiohttp_client(create_app(settings))
    credit = again.server.app[WECHAT_SANDBOX].credits("o-demo")[settings.wechat_template_approval]
    assert credit.long_term


async def test_a_second_process_on_the_same_data_dir_keeps_its_stand_ins_in_memory(tmp_path):
    owner = DurableState.open(tmp_path / SANDBOX_FILE)
    assert owner is not None
    other = SandboxState("wx-app", "secret")
    other.open_state(tmp_path)  # the lock is taken: memory only, nothing written over the owner's file
    other.grant("o-x", next(iter(other.templates)), count=1)
    assert not owner.has("sandbox")
    owner.close()
