"""The lifecycle bench runs end to end with tiny numbers: its JSON has the promised shape and every lifecycle,
transition and bare insert completed without a failed request. No timing assertion: numbers from a shared
test machine mean nothing; the committed bench/results/ are the measurements."""

from __future__ import annotations

import json

import pytest

from bench import bare, lifecycle

pytestmark = pytest.mark.slow

LIFECYCLE_ENDPOINTS = {lifecycle.L_CODE, lifecycle.L_LOGIN, lifecycle.L_SCAN, lifecycle.L_CREATE, lifecycle.L_SOURCE,
                       lifecycle.L_TARGET, lifecycle.L_DETAIL}
TRANSITION_ENDPOINTS = {lifecycle.L_SUBMIT, lifecycle.L_SOURCE, lifecycle.L_TARGET}


def _check_latencies(stats: dict, expected: set[str]) -> None:
    assert set(stats) == expected
    for label, row in stats.items():
        assert row["count"] > 0 and row["failed"] == 0, (label, row)
        assert 0 < row["p50_ms"] <= row["p99_ms"] <= row["max_ms"], (label, row)


async def test_lifecycle_bench_completes_every_lifecycle(backend, tmp_path):
    name = "sqlite" if backend == "embedded" else "services"
    out = tmp_path / "lifecycle.json"
    result = await lifecycle.main(["--clients", "2", "--lifecycles", "1", "--warmup", "0", "--referrals", "1",
                                   "--inserts", "3", "--floor-referrals", "2", "--backends", name, "--out", str(out),
                                   "--web", "2"])

    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert {"cores", "memory_mb", "python", "date", "cpu"} <= set(result["machine"])
    assert result["setup"]["clients"] == 2
    (key,) = result["backends"]
    assert key == ("sqlite" if name == "sqlite" else "postgresql+redis")
    run = result["backends"][key]
    assert run["failures"] == []

    # Two lifecycles (DONGGUAN and WENHE refer up to SUBEI): create, submit, source and target approval each.
    assert run["lifecycles"]["count"] == 2 and run["lifecycles"]["failed"] == 0
    assert run["lifecycles"]["transitions"] == 8
    assert run["lifecycles"]["per_s"] > 0 and run["lifecycles"]["transitions_per_s"] > 0
    # Two drafts driven through submit, source approval and target approval with booking.
    assert run["transitions"]["count"] == 6 and run["transitions"]["failed"] == 0
    assert run["bare_insert"]["count"] == 6 and run["bare_insert"]["failed"] == 0
    # The floor: two clients walk two bare drafts each through three steps.
    assert run["bare_transition_floor"]["count"] == 12 and run["bare_transition_floor"]["failed"] == 0
    # Issue 12: the transition phase without the figures' work, then with it again, on the same database
    # (measured where the platform is one process; the Procfile's topology reports none yet).
    cost = run["stats_cost"]
    if name == "sqlite":
        for phase in ("without_stats_run", "with_stats_again_run"):
            assert cost[phase]["count"] == 6 and cost[phase]["failed"] == 0, cost[phase]
        assert set(cost["transitions_per_s"]) == {"with_stats", "without_stats", "with_stats_again"}
        assert cost["slowdown"] is not None and cost["noise_between_runs_with_stats"] is not None
        assert result["summary"][key]["stats_slowdown"] == cost["slowdown"]
    else:
        assert cost is None

    # Per lifecycle: three logins (two requests each), scan, create+submit, two approvals, the timeline.
    assert run["lifecycles"]["requests"] == 2 * 11 and run["transitions"]["requests"] == 6
    for phase in (run["lifecycles"], run["transitions"], run["bare_insert"], run["bare_transition_floor"]):
        # CPU is counted in clock ticks (10 ms): a tiny phase may show none.
        assert phase["server_cpu_ms_per_request"] >= 0 and phase["server_busy"] >= 0
        assert phase["client_busy"] >= 0 and phase["machine_busy"] >= 0
    for phase in (run["lifecycles"], run["transitions"]):
        assert phase["background_jobs"] >= 0 and phase["outbox_drain_s"] >= 0
    assert "ratio_by_server_cpu" in run
    if name == "services":
        # The Procfile's topology: two web processes on one port, a worker, the stand-ins in their own processes;
        # the floor and the bare insert on as many web processes.
        roles = {"web": 2, "worker": 1, "sandbox": 1, "his": 1}
        assert run["lifecycles"]["processes"] == run["transitions"]["processes"] == roles
        assert run["bare_insert"]["processes"] == run["bare_transition_floor"]["processes"] == {"web": 2}
        split = run["lifecycles"]["server_cpu_ms_per_lifecycle_by_process"]
        assert set(split) == set(roles) and min(split.values()) >= 0
        cpu = run["lifecycles"]["server_cpu_s_by_process"]
        assert run["lifecycles"]["server_cpu_s"] == pytest.approx(cpu["web"] + cpu["worker"], abs=0.011)
        assert set(run["transitions"]["server_cpu_ms_per_transition_by_process"]) == set(roles)

    _check_latencies(run["endpoints"]["lifecycle"], LIFECYCLE_ENDPOINTS)
    _check_latencies(run["endpoints"]["transitions"], TRANSITION_ENDPOINTS)
    _check_latencies(run["endpoints"]["bare"], {bare.LABEL, bare.TRANSITION_LABEL})

    assert run["ratio"] == pytest.approx(run["transitions"]["per_s"] / run["bare_insert"]["per_s"], rel=0.01)
    assert run["floor_ratio"] == pytest.approx(
        run["bare_transition_floor"]["per_s"] / run["bare_insert"]["per_s"], rel=0.01)
    assert run["ratio_to_floor"] == pytest.approx(
        run["transitions"]["per_s"] / run["bare_transition_floor"]["per_s"], rel=0.01)
    targets = run["targets"]
    assert targets["at_target_concurrency"] is False  # 2 clients, not the 32 the targets are set for
    assert targets["ratio_min"] == 0.5 and targets["p99_max_ms"] == 250
    assert isinstance(targets["ratio_met"], bool) and isinstance(targets["p99_met"], bool)
    assert isinstance(targets["floor_ratio_meets_ratio_min"], bool)
    assert targets["floor_p99_ms"] == run["bare_transition_floor"]["p99_ms"] > 0
    assert result["summary"][key]["ratio"] == run["ratio"]


async def test_stats_bench_measures_every_figure_in_both_scopes(backend, tmp_path):
    from bench import stats

    name = "sqlite" if backend == "embedded" else "services"
    out = tmp_path / "stats.json"
    result = await stats.main(["--referrals", "200", "--years", "1", "--rounds", "1", "--clients", "2",
                               "--backends", name, "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    (run,) = result["backends"].values()
    assert run["failures"] == [] and "完成：200 张转诊单" in run["generation"]["output"]
    # Every figure × filters on/off × consortium/institution scope was called and answered.
    assert len(run["endpoints"]) == len(stats.FIGURES) * 4
    for label, row in run["endpoints"].items():
        assert row["count"] >= 1 and row["failed"] == 0 and row["p99_ms"] > 0, label
    assert {label.split(" format=")[1] for label in run["exports"]} == {"csv", "xlsx"}
    assert run["targets"]["p99_max_ms"] == (500.0 if name == "sqlite" else 200.0)
