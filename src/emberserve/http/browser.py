"""Browsers: CORS (TorchServe's ``cors_allowed_*`` keys) and a guard for the management port.

CORS, as TorchServe configures Netty's CorsHandler: when ``cors_allowed_origin`` is set (``*`` or
one origin), a preflight ``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method`` is
answered at once (200, empty body) and answers to allowed origins carry
``Access-Control-Allow-Origin``.

The management guard is Ember's own (SECURITY.md Z7, DNS rebinding): a web page must not be
able to register models through a browser on the operator's machine.

- A request with an ``Origin`` header that CORS does not allow gets 403 — browsers always send
  ``Origin`` on cross-site POST/PUT/DELETE, command-line clients never do.
- While the management API listens on loopback only, the ``Host`` header must name a loopback
  host (``localhost``, ``127.0.0.1``, ``[::1]``): a rebound ``evil.example`` gets 403.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from emberserve.errors import ForbiddenError
from emberserve.http.connection import EarlyCheck, Handler, HttpRequest, HttpResponse, StreamingResponse
from emberserve.http.responses import error_response

__all__ = ["CorsPolicy", "chain_checks", "management_guard"]

_LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})


def _header(headers: Sequence[tuple[str, str]], name: str) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


class CorsPolicy:
    """The ``cors_allowed_*`` keys (None origin = CORS off).

    >>> policy = CorsPolicy("https://app.example", "GET,POST", None)
    >>> policy.allows("https://app.example"), policy.allows("https://evil.example")
    (True, False)
    >>> CorsPolicy("*", None, None).allows("https://any.example")
    True
    """

    def __init__(self, origin: str | None, methods: str | None, headers: str | None) -> None:
        self.origin = origin.strip() if origin and origin.strip() else None
        self.methods = methods.strip() if methods else None
        self.headers = headers.strip() if headers else None

    def allows(self, origin: str) -> bool:
        return self.origin is not None and self.origin in ("*", origin)

    def wrap(self, inner: Handler) -> Handler:
        """``inner`` with preflight answers and CORS headers (``inner`` itself when CORS is off)."""
        if self.origin is None:
            return inner

        async def handle(request: HttpRequest) -> HttpResponse | StreamingResponse:
            origin = request.header("origin")
            preflight = request.method == "OPTIONS" and request.header("access-control-request-method")
            if origin is not None and preflight:
                answer = HttpResponse(200, b"", [("content-length", "0")])
                if self.allows(origin):
                    answer.headers.extend(self._preflight_headers(origin))
                return answer
            response = await inner(request)
            if origin is not None and self.allows(origin):
                response.headers.extend(self._allow_headers(origin))
            return response

        return handle

    def _allow_headers(self, origin: str) -> list[tuple[str, str]]:
        allowed = "*" if self.origin == "*" else origin
        headers = [("Access-Control-Allow-Origin", allowed)]
        if allowed != "*":
            headers.append(("Vary", "Origin"))
        return headers

    def _preflight_headers(self, origin: str) -> list[tuple[str, str]]:
        headers = self._allow_headers(origin)
        if self.methods:
            headers.append(("Access-Control-Allow-Methods", self.methods))
        if self.headers:
            headers.append(("Access-Control-Allow-Headers", self.headers))
        return headers


def management_guard(cors: CorsPolicy, *, loopback_only: bool) -> EarlyCheck:
    """The early check refusing browser-borne management requests (see the module docstring)."""

    def check(
        _method: str, _path: str, headers: list[tuple[str, str]], _length: int | None
    ) -> HttpResponse | None:
        origin = _header(headers, "origin")
        if origin is not None and origin != "null" and not cors.allows(origin):
            return error_response(
                ForbiddenError(
                    f"Requests from web pages ({origin}) may not use the management API. "
                    "Allow the origin with cors_allowed_origin in config.properties if you mean it."
                )
            )
        if origin == "null":  # sandboxed frames and file:// pages
            return error_response(ForbiddenError("Requests from web pages may not use the management API."))
        if loopback_only:
            host = _header(headers, "host")
            if host is not None and not _is_loopback_host(host):
                return error_response(
                    ForbiddenError(
                        f"Host {host!r} is not this machine: the management API listens on loopback only."
                    )
                )
        return None

    return check


def _is_loopback_host(host: str) -> bool:
    """``localhost``, ``127.0.0.1:8081``, ``[::1]:8081``… (a missing port is fine).

    >>> [_is_loopback_host(h) for h in ("localhost:8081", "127.0.0.5", "[::1]:1", "evil.example:8081")]
    [True, True, True, False]
    """
    name = host.strip().lower()
    if name.startswith("["):
        name = name[1 : name.find("]")] if "]" in name else name[1:]
    elif name.count(":") == 1:
        name = name.rsplit(":", 1)[0]
    if name in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def chain_checks(*checks: EarlyCheck | None) -> EarlyCheck | None:
    """One early check running ``checks`` in order; the first refusal wins."""
    present = [c for c in checks if c is not None]
    if not present:
        return None
    if len(present) == 1:
        return present[0]

    def check(
        method: str, path: str, headers: list[tuple[str, str]], length: int | None
    ) -> HttpResponse | None:
        for one in present:
            refused = one(method, path, headers, length)
            if refused is not None:
                return refused
        return None

    return check
