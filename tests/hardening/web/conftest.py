"""Web hardening fixtures: one seeded database (the control-plane test fleet: tenants
a and b, a user of each kind), a real control plane and a real portal on loopback
(uvicorn threads), and the secrets that must never leave the server."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from tests.control_plane.seed import KEY, PASSWORD, SECRET_A, _password_hash, seeded_sqlite
from tests.portal.servers import csrf_of, serving
from wafleet.config import Settings, load_settings
from wafleet.portal.ratelimit import LoginLimiter

WEBHOOK_SECRET = f"{SECRET_A}-hook"  # the seeded tenant a's webhook secret


@dataclass
class WebStack:
    settings: Settings
    cp_url: str
    portal_url: str
    portal_app: FastAPI
    cp_app: FastAPI

    def secrets(self) -> dict[str, str]:
        """What must never appear in a response body or a log line."""
        return {
            "portal key": KEY,
            "password": PASSWORD,
            "password hash": _password_hash(),
            "webhook secret": WEBHOOK_SECRET,
        }


@pytest.fixture(scope="package")
def web_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebStack]:
    from wafleet.control_plane.app import create_app as create_cp
    from wafleet.portal.app import create_app as create_portal

    data = tmp_path_factory.mktemp("web-hardening")
    url = seeded_sqlite(data)
    base = load_settings(data_dir=data, database_url=url, portal_key=KEY)
    cp_app = create_cp(base, run_jobs=False)
    with serving(cp_app) as cp:
        settings = load_settings(
            data_dir=data, database_url=url, portal_key=KEY, control_plane_url=cp.url
        )
        # The matrix logs in many times from one address: the throttle is tested apart.
        portal_app = create_portal(
            settings,
            limiter=LoginLimiter(max_failures=10_000),
            poll_interval=0.05,
            heartbeat_interval=0.5,
        )
        with serving(portal_app) as portal:
            yield WebStack(settings, cp.url, portal.url, portal_app, cp_app)


def portal_login(base_url: str, email: str, password: str = PASSWORD) -> httpx.Client:
    client = httpx.Client(base_url=base_url, timeout=15, follow_redirects=False)
    token = csrf_of(client.get("/login").text)
    resp = client.post("/login", data={"email": email, "password": password, "csrf_token": token})
    assert resp.status_code == 303, resp.text
    return client


def data_path(stack: WebStack) -> Path:
    return stack.settings.data_dir
