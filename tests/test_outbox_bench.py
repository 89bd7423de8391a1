"""`python -m bench notify` runs end to end with tiny numbers: worker processes deliver every job to the sandbox
once and the JSON has its promised shape. No timing assertion (a shared test machine); the committed
bench/results/notify-*.json are the measurements."""

from __future__ import annotations

import json

import pytest

from bench import notify

pytestmark = pytest.mark.slow


async def test_notify_bench_delivers_every_job_once(backend, tmp_path):
    name = "sqlite" if backend == "embedded" else "postgres"
    results = await notify.main(["--backend", name, "--jobs", "40", "--concurrency", "4", "--out", str(tmp_path)])
    result = results[name]
    assert json.loads((tmp_path / f"notify-{name}.json").read_text()) == json.loads(json.dumps(result))
    assert {"cores", "memory_mb", "python", "cpu"} <= set(result["machine"])
    assert [run["workers"] for run in result["runs"]] == ([1] if name == "sqlite" else [1, 2])
    for run in result["runs"]:
        assert run["delivered"] == run["distinct_delivered"] == run["jobs_marked_done"] == 40
        assert run["duplicates"] == 0 and run["all_expected"] is True
        assert run["jobs_per_s"] > 0 and run["ratio_to_bare"] > 0
        assert set(run["cpu_ms_per_job"]) == {"workers", "sandbox", "postgres", "redis", "rest_of_machine",
                                              "machine"}
    assert [b["failures"] for b in result["bare"]] == [0] * len(result["bare"])
    if name == "postgres":
        assert result["target"]["workers"] == 2 and result["target"]["measured"] == result["runs"][1]["jobs_per_s"]
