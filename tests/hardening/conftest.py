"""Hardening fixtures: the e2e `Stack` (real simulator / worker / control plane processes
on a SQLite copy of the seeded template), a module-wide linked stack the fault matrix
reuses across its cases, and `Tally`, the counts every hardening test prints (-s).

Sizes are chosen so the whole directory stays within ~5 minutes on 2 cores: one stack for
the whole fault matrix, kill rounds inside one continuous message stream, a few hundred
messages per stream.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import PHONE, SLUG, Stack, eventually, seeded_data_dir
from tests.support.procs import free_port

__all__ = ["seeded_data_dir"]


@dataclass
class Tally:
    """What a hardening test did and what came of it; printed at the end (pytest -s)."""

    name: str
    faults: int = 0
    kills: int = 0
    inbound: int = 0  # accepted by the simulator (ids returned)
    outbound: int = 0  # accepted by the control plane (202)
    lost: int = 0
    duplicated: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        more = "".join(f" {k}={v}" for k, v in self.extra.items())
        return (
            f"[hardening] {self.name}: faults={self.faults} kills={self.kills} "
            f"messages_in={self.inbound} messages_out={self.outbound} "
            f"lost={self.lost} duplicated={self.duplicated}{more}"
        )

    def report(self) -> None:
        print(self.line())
        REPORTED[self.name] = self.line()


REPORTED: dict[str, str] = {}  # tally name → its last line, for the terminal summary


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The counts of every hardening test that ran, also without -s."""
    if REPORTED:
        terminalreporter.section("hardening counts")
        for line in REPORTED.values():
            terminalreporter.write_line(line)


def count_dupes(values: list[str]) -> int:
    """How many values occur more than once (each extra copy counts)."""
    return sum(c - 1 for c in Counter(values).values() if c > 1)


def tenant_log_lines(data: Path, slug: str = SLUG) -> list[dict[str, Any]]:
    """The tenant's JSON log file, parsed (lines that are not JSON are skipped)."""
    path = data / "logs" / f"{slug}.log"
    if not path.exists():
        return []
    out: list[dict[str, Any]] = []
    for raw in path.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            line = json.loads(raw)
            if isinstance(line, dict):
                out.append(line)
    return out


def new_stack(seeded: Path, root: Path, **env: str) -> Stack:
    data = root / "data"
    shutil.copytree(seeded, data)
    st = Stack(root=root, data=data, sim_port=free_port(), cp_port=free_port())
    st.env_overrides.update(env)
    return st


def stop_all(st: Stack) -> None:
    for p in reversed(st.procs):
        with contextlib.suppress(Exception):
            p.stop()


# The matrix's timings: backoff 1 s → x2 → capped at 3 s, no jitter, so "growing" and
# "at once" (restart_required: well under 1 s) are both visible in the timeline.
MATRIX_ENV = {
    "WAFLEET_RECONNECT_INITIAL_DELAY": "1",
    "WAFLEET_RECONNECT_MAX_DELAY": "3",
}


@pytest.fixture(scope="module")
def shared_stack(
    seeded_data_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """One linked stack (simulator, control plane, worker) for a whole test module."""
    st = new_stack(seeded_data_dir, tmp_path_factory.mktemp("hardening-shared"), **MATRIX_ENV)
    try:
        st.start_simulator()
        st.start_control_plane()
        st.start_worker()
        st.link()
        yield st
    finally:
        stop_all(st)


def ensure_connected(st: Stack) -> None:
    """Back to a healthy baseline between cases: no faults, tenant ACTIVE and CONNECTED."""
    st.clear_faults()
    s = st.session()
    if s["state"] == "CONNECTED" and s["tenant_status"] == "ACTIVE":
        return
    if s["state"] == "LOGGED_OUT" or s["last_disconnect_cause"] == "qr_timeout" or not s["phone"]:
        st.cp("POST", "/portal/tenant/current/actions/relink", expect=202)
        st.link()
        return
    if s["state"] == "QR_READY":
        st.link()
        return
    st.cp("POST", "/portal/tenant/current/actions/restart", expect=202)
    st.wait_state("CONNECTED", phone=PHONE, timeout=30)
    eventually(
        lambda: st.session()["tenant_status"] == "ACTIVE", timeout=10, what="ACTIVE", stack=st
    )
