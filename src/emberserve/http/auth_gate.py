"""Token checks in front of the inference and management listeners, and ``GET /token``.

The check runs on the request head, before any body is read (an unauthenticated client cannot
make the server buffer its upload); see :mod:`emberserve.auth` for the rules.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from emberserve.auth import Api, TokenAuthority
from emberserve.errors import InvalidKeyError, ServerError
from emberserve.http.connection import EarlyCheck, Handler, HttpRequest, HttpResponse, StreamingResponse
from emberserve.http.responses import CACHE_HEADERS, error_response

__all__ = ["HEALTH_PATHS", "TokenApi", "token_check"]

TOKEN_PATH = "/token"  # noqa: S105 - a route, not a secret

#: Inference routes that answer only "healthy or not": open with ``token_auth_exempt_health``.
HEALTH_PATHS = frozenset({"/ping", "/v2/health/live", "/v2/health/ready"})


def token_check(
    authority: TokenAuthority, listener: Api, *, open_paths: frozenset[str] = frozenset()
) -> EarlyCheck:
    """The early check of one listener (``inference`` or ``management``).

    ``open_paths`` need no key (TorchServe has no such list; Ember fills it with
    :data:`HEALTH_PATHS` when ``token_auth_exempt_health=true`` so kubelet probes work).
    """

    def check(
        _method: str, path: str, headers: list[tuple[str, str]], _length: int | None
    ) -> HttpResponse | None:
        if path in open_paths:
            return None
        api: Api = "token" if listener == "management" and path == TOKEN_PATH else listener
        values = [value for name, value in headers if name.lower() == "authorization"]
        try:
            authority.check(api, values)
        except InvalidKeyError as err:
            return error_response(err)
        return None

    return check


class TokenApi:
    """``GET /token?type=inference|management`` on the management port: replaces that key.

    The API key was checked by :func:`token_check`; other paths go to ``inner``.
    """

    def __init__(self, inner: Handler, authority: TokenAuthority) -> None:
        self._inner = inner
        self._authority = authority

    async def __call__(self, request: HttpRequest) -> HttpResponse | StreamingResponse:
        if request.path != TOKEN_PATH:
            return await self._inner(request)
        kind = parse_qs(request.query).get("type", [""])[0]
        try:
            self._authority.rotate(kind)
        except ServerError as err:
            return error_response(err)
        # TorchServe answers an empty line; the new key is in key_file.json.
        return HttpResponse(200, b"\n", [("content-type", "text/plain"), *CACHE_HEADERS])
