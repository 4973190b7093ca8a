"""Messages in/out per hour over the last 24 h, drawn by the server as inline SVG
(no script, no library). Buckets come from the control plane's hourly stats route when
it has one, else from paging through the message logs."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from markupsafe import Markup, escape

from wafleet.portal.present import parse_ts

HOURS = 24
WIDTH, HEIGHT = 480, 170
PAD_L, PAD_R, PAD_T, PAD_B = 34, 8, 10, 26


@dataclass(frozen=True)
class HourBucket:
    start: datetime
    inbound: int = 0
    outbound: int = 0


def hour_floor(dt: datetime) -> datetime:
    return dt.replace(minute=0, second=0, microsecond=0)


def empty_buckets(now: datetime) -> list[HourBucket]:
    last = hour_floor(now)
    return [HourBucket(last - timedelta(hours=HOURS - 1 - i)) for i in range(HOURS)]


def bucket_logs(items: Iterable[dict[str, Any]], now: datetime) -> list[HourBucket]:
    """Count log items (``direction``, ``created_at``) into the 24 hourly buckets ending
    with the current hour; older or unparseable items are ignored."""
    buckets = empty_buckets(now)
    first = buckets[0].start
    counts = [[0, 0] for _ in buckets]
    for item in items:
        at = parse_ts(item.get("created_at"))
        if at is None or at < first or at > now + timedelta(minutes=5):
            continue
        idx = min(int((at - first).total_seconds() // 3600), HOURS - 1)
        counts[idx][0 if item.get("direction") == "in" else 1] += 1
    return [HourBucket(b.start, c[0], c[1]) for b, c in zip(buckets, counts, strict=True)]


def buckets_from_stats(data: Any, now: datetime) -> list[HourBucket] | None:
    """Buckets from ``GET /portal/tenant/current/stats/hourly`` —
    ``{"hours": [{"hour": ISO, "in": n, "out": n}]}`` — or None when malformed."""
    if not isinstance(data, dict) or not isinstance(data.get("hours"), list):
        return None
    by_start = {b.start: b for b in empty_buckets(now)}
    for row in data["hours"]:
        if not isinstance(row, dict):
            return None
        at = parse_ts(row.get("hour"))
        if at is None:
            return None
        start = hour_floor(at)
        if start in by_start:
            by_start[start] = HourBucket(start, int(row.get("in") or 0), int(row.get("out") or 0))
    return [by_start[k] for k in sorted(by_start)]


def render_svg(buckets: list[HourBucket], *, partial: bool = False) -> Markup:
    total_in = sum(b.inbound for b in buckets)
    total_out = sum(b.outbound for b in buckets)
    peak = max([1, *(max(b.inbound, b.outbound) for b in buckets)])
    plot_w = WIDTH - PAD_L - PAD_R
    plot_h = HEIGHT - PAD_T - PAD_B
    slot = plot_w / max(len(buckets), 1)
    bar_w = max(slot / 2 - 1, 1)
    label = f"Messages in the last 24 hours: {total_in} in, {total_out} out" + (
        " (partial: too many messages to count them all)" if partial else ""
    )
    out: list[str] = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(label)}</title>",
        f'<line x1="{PAD_L}" y1="{PAD_T + plot_h}" x2="{WIDTH - PAD_R}" y2="{PAD_T + plot_h}" '
        'class="axis"/>',
        f'<text x="{PAD_L - 4}" y="{PAD_T + 8}" text-anchor="end" class="tick">{peak}</text>',
        f'<text x="{PAD_L - 4}" y="{PAD_T + plot_h}" text-anchor="end" class="tick">0</text>',
    ]
    for i, b in enumerate(buckets):
        x = PAD_L + i * slot
        tip = escape(f"{b.start:%H}:00 UTC: {b.inbound} in, {b.outbound} out")
        for j, (n, cls) in enumerate(((b.inbound, "bar-in"), (b.outbound, "bar-out"))):
            h = plot_h * n / peak
            out.append(
                f'<rect class="{cls}" x="{x + 1 + j * bar_w:.1f}" y="{PAD_T + plot_h - h:.1f}" '
                f'width="{bar_w:.1f}" height="{h:.1f}"><title>{tip}</title></rect>'
            )
        if i % 6 == 0 or i == len(buckets) - 1:
            out.append(
                f'<text x="{x + slot / 2:.1f}" y="{HEIGHT - 8}" text-anchor="middle" '
                f'class="tick">{b.start:%H}:00</text>'
            )
    out.append("</svg>")
    # Everything interpolated above is a number, a fixed class name or escaped text.
    return Markup("".join(out))  # noqa: S704
