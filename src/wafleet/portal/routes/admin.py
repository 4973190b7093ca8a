"""``/admin``: the fleet for operators — counts by state, tenants needing attention
first, workers with their heartbeat age (stale ones highlighted). Admins only."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from wafleet.portal.auth import CurrentUser
from wafleet.portal.context import current_user, get_ctx, render
from wafleet.portal.errors import PortalError
from wafleet.portal.present import (
    absolute,
    attention_rank,
    attention_reason,
    last_disconnect_words,
    parse_ts,
    relative,
)
from wafleet.states import SessionState, WorkerStatus

router = APIRouter()


def _items(data: Any) -> list[dict[str, Any]]:
    items = data.get("items") if isinstance(data, dict) else None
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []


@router.get("/admin")
async def admin_page(request: Request, user: CurrentUser = Depends(current_user)) -> Response:
    if not user.is_admin:
        raise PortalError(403, "forbidden", "the fleet view is for administrators only")
    ctx = get_ctx(request)
    now = ctx.now()
    tenants_data, workers_data = await asyncio.gather(
        ctx.cp.get("/admin/tenants", user=user.email),
        ctx.cp.get("/admin/workers", user=user.email),
    )
    tenants: list[dict[str, Any]] = []
    for item in _items(tenants_data):
        rank = attention_rank(item, now)
        seen = parse_ts(item.get("last_seen_at"))
        tenants.append(
            {
                "slug": str(item.get("slug") or ""),
                "name": str(item.get("name") or ""),
                "status": str(item.get("status") or ""),
                "state": str(item.get("session_state") or "—"),
                "phone": str(item.get("phone") or "—"),
                "worker": str(item.get("worker_id") or "—"),
                "seen": relative(seen, now),
                "seen_abs": absolute(seen),
                "disconnect": last_disconnect_words(item.get("last_disconnect")),
                "rank": rank,
                "reason": attention_reason(item, rank),
            }
        )
    tenants.sort(key=lambda t: (t["rank"], t["slug"]))
    states = Counter(t["state"] for t in tenants)
    counts = [(s.value, states.get(s.value, 0)) for s in SessionState]
    statuses = Counter(t["status"] for t in tenants)

    workers = []
    for w in _items(workers_data):
        hb = parse_ts(w.get("last_heartbeat_at"))
        age = (now - hb).total_seconds() if hb else None
        status = str(w.get("status") or "")
        running = status == WorkerStatus.RUNNING.value
        stale = status == WorkerStatus.STALE.value or (
            running and (age is None or age > ctx.settings.stale_after)
        )
        workers.append(
            {
                "id": str(w.get("id") or ""),
                "host": str(w.get("host") or ""),
                "pid": str(w.get("pid") or ""),
                "status": status,
                "started": absolute(parse_ts(w.get("started_at"))),
                "heartbeat": relative(hb, now),
                "heartbeat_abs": absolute(hb),
                "age_s": int(age) if age is not None else None,
                "tenants": w.get("tenants", 0),
                "stale": stale,
                "rank": 0 if stale else (1 if running else 2),
            }
        )
    workers.sort(key=lambda w: (w["rank"], w["id"]))
    return render(
        request,
        "admin.html",
        user=user,
        tenants=tenants,
        attention=[t for t in tenants if t["rank"] < 9],
        counts=counts,
        statuses=sorted(statuses.items()),
        workers=workers,
        stale_after=int(ctx.settings.stale_after),
    )
