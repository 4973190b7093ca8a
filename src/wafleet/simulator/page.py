"""The phone page served at ``GET /`` (plain HTML + JS in ``phone.html``, no build step)."""

from __future__ import annotations

from functools import cache
from importlib.resources import files


@cache
def phone_page() -> bytes:
    return files("wafleet.simulator").joinpath("phone.html").read_bytes()
