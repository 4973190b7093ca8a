"""Bot rules: the schema of ``tenant configure --rules FILE.json`` and the matcher.

First matching rule replies; ``{text}``, ``{sender}``, ``{chat}`` are filled in. A message
no rule answers goes to the webhook when one is configured.
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from wafleet.logging import get_logger
from wafleet.worker.safe_regex import DEFAULT_BUDGET, BudgetExceeded, SafeRegex, UnsafePattern

log = get_logger("wafleet.worker.rules")

MAX_RULES = 500
MAX_REPLY_LEN = 4096
MAX_PATTERN_LEN = 1000
_PLACEHOLDER = re.compile(r"\{(\w*)\}")
_ALLOWED_PLACEHOLDERS = {"text", "sender", "chat"}


class RulesError(ValueError):
    """A rules document is invalid; the message is one line naming the rule and field."""

    def __init__(self, message: str) -> None:
        # One line, whatever a hostile document puts in field names or values.
        super().__init__("".join(c if c.isprintable() else repr(c)[1:-1] for c in message))


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    match: Literal["keyword", "regex", "any"]
    # validate_default: a missing pattern must still be checked against `match`
    pattern: str | None = Field(default=None, max_length=MAX_PATTERN_LEN, validate_default=True)
    reply: str = Field(min_length=1, max_length=MAX_REPLY_LEN)

    # Field validators (not one model validator) so an error names its field.
    @field_validator("pattern")
    @classmethod
    def _check_pattern(cls, v: str | None, info: ValidationInfo) -> str | None:
        match = info.data.get("match")  # absent when `match` itself was invalid
        if match in ("keyword", "regex") and not v:
            raise ValueError(f"a '{match}' rule needs a non-empty pattern")
        if match == "regex" and v is not None:
            try:
                re.compile(v)
            except (re.error, OverflowError, RecursionError) as err:
                raise ValueError(f"invalid regex: {err}") from None
            try:
                # Regex rules run on a linear-time matcher (safe_regex.py): refuse here
                # what it cannot run, so a saved rule never fails in the worker.
                SafeRegex(v)
            except UnsafePattern as err:
                raise ValueError(f"regex not allowed: {err}") from None
        return v

    @field_validator("reply")
    @classmethod
    def _check_reply(cls, v: str) -> str:
        for name in _PLACEHOLDER.findall(v):
            if name not in _ALLOWED_PLACEHOLDERS:
                raise ValueError(
                    f"unknown placeholder {{{name}}} (use {{text}}, {{sender}}, {{chat}})"
                )
        return v


class Webhook(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(max_length=2048)
    secret: str = Field(min_length=1, max_length=512)

    @field_validator("url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL")
        return v


class BotConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: list[Rule] = Field(default_factory=list, max_length=MAX_RULES)
    webhook: Webhook | None = None

    def public_dict(self) -> dict[str, Any]:
        """The config without the webhook secret (for API responses and logs)."""
        data = self.model_dump(mode="json")
        if data.get("webhook"):
            data["webhook"]["secret"] = "***"
        return data


def is_private_host(host: str) -> bool:
    """True for loopback, private, link-local and unspecified literal addresses and
    for 'localhost'. Names are resolved (and checked again) at delivery."""
    h = host.strip("[]").lower().rstrip(".")
    if h == "localhost" or h.endswith(".localhost"):
        return True
    try:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(h)
    except ValueError:
        # Legacy IPv4 spellings the resolver accepts: 127.1, 0x7f.1, 2130706433 ...
        try:
            ip = ipaddress.IPv4Address(socket.inet_aton(h))
        except (OSError, ValueError):
            return False
    return ip_is_private(ip)


def ip_is_private(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is loopback
    return (
        not ip.is_global  # also shared (CGNAT) space, which is neither private nor public
        or ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_unspecified
        or ip.is_reserved
        or ip.is_multicast
    )


def _loc_to_words(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    i = 0
    while i < len(loc):
        item = loc[i]
        if item == "rules" and i + 1 < len(loc) and isinstance(loc[i + 1], int):
            parts.append(f"rule {int(loc[i + 1]) + 1}")
            i += 2
            continue
        parts.append(str(item) if str(item).isprintable() else repr(item))
        i += 1
    return ", ".join(parts) if parts else "document"


def parse_bot_config(data: Any, *, allow_private_webhook: bool = True) -> BotConfig:
    """Validate a rules document (already parsed JSON). Raises RulesError (one line)."""
    if not isinstance(data, dict):
        raise RulesError("document: must be a JSON object with a 'rules' list")
    try:
        cfg = BotConfig.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = _loc_to_words(tuple(first.get("loc", ())))
        msg = str(first.get("msg", "invalid")).removeprefix("Value error, ")
        raise RulesError(f"{where}: {msg}") from None
    if cfg.webhook and not allow_private_webhook:
        host = urlsplit(cfg.webhook.url).hostname or ""
        if is_private_host(host):
            raise RulesError(
                "webhook, url: loopback/private addresses are refused "
                "(set WAFLEET_WEBHOOK_ALLOW_PRIVATE=true to allow)"
            )
    return cfg


def load_bot_config_text(text: str, *, allow_private_webhook: bool = True) -> BotConfig:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise RulesError(f"document: not valid JSON ({err.msg} at line {err.lineno})") from None
    except RecursionError:
        raise RulesError("document: not valid JSON (nested too deeply)") from None
    return parse_bot_config(data, allow_private_webhook=allow_private_webhook)


class RuleMatcher:
    """Compiled rules; ``reply_for`` returns the reply text or None (→ webhook).

    Regex rules (case-insensitive) run on `SafeRegex`, never on backtracking ``re``: a
    hostile pattern cannot hang the worker. One message gets ``budget`` state visits for
    all its regex rules together; a regex rule that would need more counts as not
    matching (logged), so the message falls through to later rules or the webhook.
    """

    def __init__(self, config: BotConfig, *, budget: int = DEFAULT_BUDGET) -> None:
        self.config = config
        self.budget = budget
        self._compiled: list[tuple[Rule, SafeRegex | None]] = []
        for rule in config.rules:
            rx: SafeRegex | None = None
            if rule.match == "regex":
                assert rule.pattern is not None
                rx = SafeRegex(rule.pattern)
            self._compiled.append((rule, rx))

    def reply_for(self, text: str, sender: str, chat: str) -> str | None:
        lowered = text.casefold()
        left = self.budget
        for index, (rule, rx) in enumerate(self._compiled):
            if rule.match == "any":
                hit = True
            elif rule.match == "keyword":
                assert rule.pattern is not None
                hit = rule.pattern.casefold() in lowered
            else:
                assert rx is not None
                try:
                    hit, used = rx.run(text, budget=left)
                    left -= used
                except BudgetExceeded:
                    log.warning(
                        "regex rule skipped: step budget exhausted",
                        rule=index + 1,
                        text_len=len(text),
                        budget=self.budget,
                    )
                    hit, left = False, 0
            if hit:
                return render_reply(rule.reply, text=text, sender=sender, chat=chat)
        return None


def render_reply(template: str, *, text: str, sender: str, chat: str) -> str:
    values = {"text": text, "sender": sender, "chat": chat}
    # Not str.format: user text may contain braces; substitute only our three names.
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)
