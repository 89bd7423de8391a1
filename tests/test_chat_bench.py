"""The chat bench runs end to end with tiny numbers on PostgreSQL + Redis: both systems connect every client,
every message sent at the fixed rate and in the saturation phase is stored, acked and delivered to every other
participant exactly once, and the JSON has the promised shape. No timing assertion: the committed
bench/results/ are the measurements."""

from __future__ import annotations

import json

import pytest

from bench import chat
from tests.conftest import require_services

pytestmark = pytest.mark.slow


async def test_chat_bench_runs_both_systems_and_loses_nothing(tmp_path):
    require_services("the chat bench")
    out = tmp_path / "chat.json"
    result = await chat.main(["--clients", "6", "--conversations", "2", "--rate", "12", "--duration", "1",
                              "--saturate", "1", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert result["setup"]["participants_per_conversation"] == 3
    for name in ("ours", "bare"):
        run = result[name]
        assert run["memory"]["sockets"] == 6 and run["memory"]["rss_after_kb"] > 0
        fixed = run["fixed_rate"]
        assert fixed["sent"] == fixed["acked"] == 12
        assert fixed["delivery"]["delivered_to_all"] == 12
        assert fixed["delivery"]["incomplete"] == fixed["delivery"]["duplicates"] == 0
        assert 0 < fixed["delivery"]["p50_ms"] <= fixed["delivery"]["p99_ms"]
        saturation = run["saturation"]
        assert saturation["senders"] == 2 and saturation["acked"] > 0 and saturation["stored_per_s"] > 0
        assert saturation["delivery"]["incomplete"] == saturation["delivery"]["duplicates"] == 0
        assert run["warmup_messages"] == 2
        assert run["stored_in_database"] == run["warmup_messages"] + fixed["acked"] + saturation["acked"]
        assert run["errors"] == []
    assert set(result["verdict"]) == {"ours_over_bare_rate", "rate_target_met", "p99_target_met"}
