"""Multi-person VoIP for ward rounds (issue 11 point 3): `GET /ward-rounds/{id}/voip` signs the room with the
caller's own session_key (stored encrypted at each login, never returned); the WeChat sandbox checks such
signatures (bad, stale, replayed, or made with a replaced session_key) as wx.joinVoIPChat does; and the
signer and the sandbox both reproduce WeChat's published example."""

from __future__ import annotations

from appkeys import CIPHER, WECHAT_SANDBOX
from models import WeChatAccount
from tests.consult_support import schedule_round as schedule
from tests.consult_support import up_candidate
from tests.referral_support import Desk
from wechat.sandbox.state import SandboxState
from wechat.voip import voip_signature

EXAMPLE = {"appId": "wx20afc706a711eefc", "groupId": "1559129713_672975982", "nonceStr": "8AP6DT9ybtniUJfb",
           "timeStamp": 1559129714, "session_key": "gDyVgzwa0mFz9uUP7M6GQQ=="}
EXAMPLE_SIGNATURE = "b002b824688dd8593a6079e11d8c5e8734fbcb39a6d5906eb347bfbcad79c617"


def test_the_signer_reproduces_wechats_published_example():
    assert voip_signature(EXAMPLE["appId"], EXAMPLE["groupId"], EXAMPLE["nonceStr"], EXAMPLE["timeStamp"],
                          EXAMPLE["session_key"]) == EXAMPLE_SIGNATURE


def test_the_sandbox_accepts_the_published_example_and_nothing_else():
    state = SandboxState(EXAMPLE["appId"], "secret", clock=lambda: EXAMPLE["timeStamp"] + 10.0)
    state.session_keys["o_example"] = EXAMPLE["session_key"]
    args = ("o_example", EXAMPLE["groupId"], EXAMPLE["nonceStr"], EXAMPLE["timeStamp"])
    assert state.join_voip(*args, EXAMPLE_SIGNATURE) == ["o_example"]
    for bad in (EXAMPLE_SIGNATURE[:-1] + "0", ""):
        try:
            state.join_voip("o_example", EXAMPLE["groupId"], "another-nonce", EXAMPLE["timeStamp"], bad)
        except ValueError as exc:
            assert str(exc) == "签名校验失败"
        else:
            raise AssertionError("a bad signature was accepted")


async def _join(client, openid: str, room: dict):
    return await client.post("/wechat-sandbox/sandbox/voip/join", json={
        "openid": openid, "groupId": room["groupId"], "nonceStr": room["nonceStr"], "timeStamp": room["timeStamp"],
        "signature": room["signature"]})


async def test_participants_join_the_rounds_room_with_their_own_signature(client):
    desk = await Desk.open(client)
    _, referral = await up_candidate(desk)
    rid = (await desk.ok(await schedule(desk, referral["id"]), 201))["id"]
    subei, dongguan = [await desk.ok(await desk.get((code, "doctor"), f"/api/v1/ward-rounds/{rid}/voip"))
                       for code in ("SUBEI", "DONGGUAN")]
    assert subei["groupId"] == dongguan["groupId"] and subei["signature"] != dongguan["signature"]
    assert (await desk.ok(await _join(client, "demo_subei_doctor", subei)))["openIdList"] == ["demo_subei_doctor"]
    joined = await desk.ok(await _join(client, "demo_dongguan_doctor", dongguan))
    assert joined["openIdList"] == ["demo_subei_doctor", "demo_dongguan_doctor"]

    # Replayed, signed for somebody else, or stale: refused.
    replay = await _join(client, "demo_subei_doctor", subei)
    assert replay.status == 400 and (await replay.json())["error"]["message"] == "签名已被使用"
    fresh = await desk.ok(await desk.get(("SUBEI", "doctor"), f"/api/v1/ward-rounds/{rid}/voip"))
    assert (await _join(client, "demo_dongguan_doctor", fresh)).status == 400
    client.server.app[WECHAT_SANDBOX].advance(301)
    stale = await _join(client, "demo_subei_doctor", fresh)
    assert stale.status == 400 and (await stale.json())["error"]["message"] == "签名已过期"

    # A new login replaces the session_key: a signature made with the old one no longer works.
    before = await desk.ok(await desk.get(("DONGGUAN", "doctor"), f"/api/v1/ward-rounds/{rid}/voip"))
    relogin = await client.post("/api/v1/auth/wx-login", json={"code": (await (await client.post(
        "/wechat-sandbox/sandbox/login-code", json={"openid": "demo_dongguan_doctor"})).json())["code"]})
    assert relogin.status == 200
    old = await _join(client, "demo_dongguan_doctor", before)
    assert old.status == 400 and (await old.json())["error"]["message"] == "签名校验失败"


async def test_the_session_key_is_kept_encrypted_and_never_returned(client):
    desk = await Desk.open(client)
    session = await desk.session("DONGGUAN", "doctor")
    key = client.server.app[WECHAT_SANDBOX].session_keys["demo_dongguan_doctor"]
    account = await WeChatAccount.get(openid="demo_dongguan_doctor")
    assert key not in account.session_key_enc
    assert client.server.app[CIPHER].decrypt(account.session_key_enc, "wechat_session_key") == key
    me = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {session['access_token']}"})
    assert key not in str(session) and key not in await me.text()


async def test_only_participants_of_an_open_round_get_a_room(client):
    desk = await Desk.open(client)
    _, referral = await up_candidate(desk)
    rid = (await desk.ok(await schedule(desk, referral["id"]), 201))["id"]
    assert (await desk.get(("GAOYOU", "doctor"), f"/api/v1/ward-rounds/{rid}/voip")).status == 404
    await desk.ok(await desk.client.post(f"/api/v1/ward-rounds/{rid}/cancel", json={},
                                         headers=await desk.headers(("SUBEI", "doctor"))))
    closed = await desk.get(("SUBEI", "doctor"), f"/api/v1/ward-rounds/{rid}/voip")
    assert closed.status == 409
