"""The bare-stack reference does the work its name claims: the transition floor reads the caller and the
referral, moves it on under its version, chains an event to the one before and queues one job per step, and
refuses what a transition would refuse (no token, a referral past its last step)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3

import pytest

from bench import bare
from bench.common import Http, Recorder, RequestFailed, client_session, free_port
from bench.lifecycle import _base_env, serving

pytestmark = pytest.mark.slow


async def test_the_transition_floor_writes_a_chained_event_and_a_job_per_step(tmp_path):
    database = tmp_path / "bare.sqlite3"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    async with serving(["-m", "bench.bare", "--port", str(port), "--db-url", f"sqlite://{database}"],
                       _base_env(), tmp_path / "bare.log", port):
        recorder = Recorder()
        result = await bare.drive_transitions(base, 2, 2, recorder)
        assert result["count"] == 12 and result["failed"] == 0
        assert len(recorder.latencies[bare.TRANSITION_LABEL]) == 12

        async with client_session(1) as session:
            http = Http(session, base, Recorder())
            desk = (await http.call("setup", "POST", "/setup", json_body={"clients": 1, "referrals": 1}))["desks"][0]
            rid = desk["referrals"][0]
            with pytest.raises(RequestFailed):
                await http.call("step", "POST", f"/referrals/{rid}/step", json_body={}, token="not-a-token")
            assert http.recorder.failures[-1]["status"] == 401
            statuses = [(await http.call("step", "POST", f"/referrals/{rid}/step", json_body={},
                                         token=desk["token"]))["status"] for _ in bare.STEPS]
            assert statuses == ["pending_source", "pending_target", "scheduled"]
            with pytest.raises(RequestFailed):
                await http.call("step", "POST", f"/referrals/{rid}/step", json_body={}, token=desk["token"])
            assert http.recorder.failures[-1]["status"] == 404
            async with session.post(f"{base}/rows", json={"kind": "k", "payload": {"a": 1}}) as resp:
                assert resp.status == 201

    with contextlib.closing(sqlite3.connect(database)) as db:
        referrals = db.execute("SELECT id, status, version, chain_head FROM bench_referral").fetchall()
        assert len(referrals) == 5 and {r[1:3] for r in referrals} == {("scheduled", 4)}
        for referral_id, _, _, head in referrals:
            events = db.execute("SELECT seq, from_status, to_status, actor_name, prev_hash, hash FROM bench_event "
                                "WHERE referral_id = ? ORDER BY seq", (referral_id,)).fetchall()
            assert [e[0] for e in events] == [2, 3, 4]
            previous = "0" * 64
            for seq, from_status, to_status, actor, prev_hash, digest in events:
                assert prev_hash == previous
                assert digest == hashlib.sha256(json.dumps([prev_hash, seq, "approve", from_status, to_status, actor],
                                                           ensure_ascii=False).encode()).hexdigest()
                previous = digest
            assert head == f"4:{previous}"
        assert db.execute("SELECT count(*), count(DISTINCT dedupe_key) FROM bench_job").fetchone() == (15, 15)
        assert db.execute("SELECT count(*) FROM bench_row").fetchone() == (1,)
