"""The portal's client of the control plane's internal HTTP API.

Every call carries the portal key and the logged-in user's email; the control plane does
the authorisation. Failures are mapped to `ControlPlaneError` (status, code, message) so
routes can pass them through in the contract's ``{"error": {"code", "message"}}`` shape.
"""

from __future__ import annotations

from typing import Any

import httpx

from wafleet.portal.errors import PortalError

DEFAULT_TIMEOUT = 5.0


class ControlPlaneError(PortalError):
    """An error answer (or no answer) from the control plane, ready to show a user."""


class ControlPlaneUnavailable(ControlPlaneError):
    def __init__(self, message: str) -> None:
        super().__init__(503, "control_plane_unavailable", message)


def _error_from_response(resp: httpx.Response) -> ControlPlaneError:
    try:
        data = resp.json()
    except ValueError:
        data = None
    err = data.get("error") if isinstance(data, dict) else None
    if resp.status_code == 401:
        # A 401 from the control plane means the *portal key* was refused: a server-side
        # misconfiguration, not the user's session, so never pass it on as "log in again".
        return ControlPlaneError(
            502, "control_plane_auth", "the control plane refused the portal key"
        )
    if isinstance(err, dict) and isinstance(err.get("message"), str):
        code = str(err.get("code") or "error")
        return ControlPlaneError(resp.status_code, code, err["message"])
    if isinstance(data, dict) and isinstance(data.get("detail"), str):
        return ControlPlaneError(resp.status_code, "error", data["detail"])
    if resp.status_code >= 500:
        return ControlPlaneError(
            502, "control_plane_error", f"the control plane failed (HTTP {resp.status_code})"
        )
    return ControlPlaneError(
        resp.status_code, "error", f"the control plane answered HTTP {resp.status_code}"
    )


class ControlPlaneClient:
    """Thin async wrapper over `httpx.AsyncClient`; one per portal process."""

    def __init__(
        self,
        base_url: str,
        portal_key: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 2.0)),
            headers={"x-portal-key": portal_key},
            transport=transport,
            # The control plane is internal; never pick up proxies from the environment.
            trust_env=False,
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        user: str,
        params: dict[str, Any] | None = None,
        json: Any = None,
    ) -> tuple[int, Any]:
        """Send one request; returns (status, parsed JSON or None) for 2xx answers."""
        clean = {k: v for k, v in (params or {}).items() if v is not None and v != ""}
        attempts = 2 if method == "GET" else 1
        for attempt in range(attempts):
            try:
                resp = await self._client.request(
                    method, path, params=clean, json=json, headers={"x-user-email": user}
                )
                break
            except httpx.ConnectError as err:
                # Refused/unreachable: nothing was sent, so a GET may try once more
                # (a control plane restarting); a POST is never repeated blindly.
                if attempt + 1 < attempts:
                    continue
                raise ControlPlaneUnavailable(
                    f"the control plane at {self.base_url} is unreachable"
                ) from err
            except httpx.TimeoutException as err:
                raise ControlPlaneUnavailable("the control plane did not answer in time") from err
            except httpx.TransportError as err:
                raise ControlPlaneUnavailable(
                    f"the control plane connection failed ({type(err).__name__})"
                ) from err
        if resp.status_code >= 400:
            raise _error_from_response(resp)
        if not resp.content:
            return resp.status_code, None
        try:
            return resp.status_code, resp.json()
        except ValueError:
            raise ControlPlaneError(
                502, "control_plane_error", "the control plane answered with invalid JSON"
            ) from None

    async def get(self, path: str, *, user: str, params: dict[str, Any] | None = None) -> Any:
        return (await self.request("GET", path, user=user, params=params))[1]
