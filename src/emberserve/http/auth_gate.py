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

__all__ = ["TokenApi", "token_check"]

TOKEN_PATH = "/token"  # noqa: S105 - a route, not a secret


def token_check(authority: TokenAuthority, listener: Api) -> EarlyCheck:
    """The early check of one listener (``inference`` or ``management``)."""

    def check(
        _method: str, path: str, headers: list[tuple[str, str]], _length: int | None
    ) -> HttpResponse | None:
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
