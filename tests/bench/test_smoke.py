"""Smoke runs of every `wafleet bench` scenario at tiny sizes: real processes, real
sockets; the assertions are about correctness (every message answered and stored, every
tenant back, figures present and positive), never about speed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from wafleet.bench import runner
from wafleet.bench.common import BenchError, Result

pytestmark = pytest.mark.slow


def run(name: str, tmp_path: Path, **sizes: Any) -> Result:
    (scenario,) = runner.resolve(name)
    sets = {name: {k: ",".join(map(str, v)) if isinstance(v, tuple) else str(v)
                   for k, v in sizes.items()}}  # fmt: skip
    ((_, options),) = runner.prepare([scenario], sets)
    return runner.run_one(scenario, options, keep=tmp_path)


def test_pipeline_answers_and_stores_every_message(tmp_path: Path) -> None:
    res = run("pipeline", tmp_path, tenants=2, chats=2, messages=100, rate=50, duration=1)
    f = res.figures
    for key in ("throughput_msgs_s", "baseline_msgs_s", "ratio", "p50_ms", "p99_ms"):
        assert f[key] > 0, key
    assert f["p50_ms"] <= f["p99_ms"] <= f["max_ms"]
    # inbound processed and replies sent for the burst and the paced phase alike
    assert f["stored"]["in:PROCESSED"] == 150
    assert sum(v for k, v in f["stored"].items() if k.startswith("out:")) == 150


def test_idle_measures_connected_tenants(tmp_path: Path) -> None:
    res = run("idle", tmp_path, tenants=5, window=1, settle=0.5, heartbeat_interval=0.5)
    f = res.figures
    assert f["connected_after_window"] == 5
    assert f["rss_after_mb"] > 0
    assert f["cpu_percent_of_one_core"] >= 0
    assert f["baseline_is_published_not_measured"] is True


def test_storm_brings_every_tenant_back(tmp_path: Path) -> None:
    res = run("storm", tmp_path, tenants=5)
    f = res.figures
    assert f["recovery_s"] > 0
    assert f["recovery_db_s"] >= f["recovery_s"] - 0.5
    assert f["connect_attempts"] >= 5
    assert f["peak_connect_rate_per_s"] > 0


@pytest.mark.postgres
def test_failover_moves_every_tenant_to_the_survivor(tmp_path: Path) -> None:
    try:
        res = run(
            "failover", tmp_path, tenants=6, lease_ttl=3, heartbeat_interval=0.5,
            keepalive_interval=0.5,
        )  # fmt: skip
    except BenchError as err:
        if "not found" in str(err) or "'postgres' user" in str(err):
            pytest.skip(f"PostgreSQL unavailable: {err}")
        raise
    f = res.figures
    assert f["moved_tenants"] >= 3
    assert 0 < f["failover_s"] <= f["failover_db_s"] + 0.5
    assert f["sessions_ever_run_twice"] == 0


def test_api_compares_status_with_healthz(tmp_path: Path) -> None:
    res = run("api", tmp_path, tenants=10, requests=40, concurrency=4, messages=2)
    f = res.figures
    assert f["errors"] == 0
    assert f["status_requests_s"] > 0 and f["healthz_requests_s"] > 0
    assert f["ratio"] > 0


def test_neonize_children_report_memory(tmp_path: Path) -> None:
    pytest.importorskip("neonize")
    res = run("neonize", tmp_path, sizes=(1,), shard=False)
    assert res.figures["n1"]["pss_mb_per_tenant"] > 0


def wafleet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wafleet", "bench", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli_writes_the_json_and_refuses_bad_usage(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    ok = wafleet("api", "--set", "api.tenants=5", "--set", "api.requests=20", "--json", str(out))
    assert ok.returncode == 0, ok.stderr
    doc = json.loads(out.read_text())
    assert doc["api"]["errors"] == 0 and doc["_machine"]["nproc"] >= 1
    assert "status route" in ok.stdout
    for bad in (["nosuch"], ["api", "--set", "api.bogus=1"], ["api", "--set", "api.tenants=x"]):
        res = wafleet(*bad)
        assert res.returncode == 2, (bad, res.stderr)
        assert len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert "Traceback" not in res.stderr
