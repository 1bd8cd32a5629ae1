"""Inference and management APIs on one port, when both addresses are the same.

TorchServe binds a single listener for both (its ``ConnectorType.ALL``) when
``inference_address`` equals ``management_address``, and KServe's TorchServe configs rely on it
(``inference_address=management_address=http://0.0.0.0:8085``). The inference routes are tried
first there, so only ``/models…`` (except the legacy ``/models/{m}/invoke``) and ``/token``
belong to management; each route keeps its own key and browser checks.

>>> [owner(p) for p in ("/ping", "/models", "/models/m/1.0", "/models/m/invoke", "/token")]
['inference', 'management', 'management', 'inference', 'management']
"""

from __future__ import annotations

from typing import Literal

from emberserve.http.connection import EarlyCheck, Handler, HttpRequest, HttpResponse, StreamingResponse

__all__ = ["SharedPortApi", "owner", "shared_check"]

Owner = Literal["inference", "management"]


def owner(path: str) -> Owner:
    """Which API answers ``path`` on a shared port."""
    segments = [s for s in path.split("/") if s]
    if not segments:
        return "inference"
    if segments[0] == "token" and len(segments) == 1:
        return "management"
    if segments[0] == "models" and not (len(segments) == 3 and segments[2] == "invoke"):
        return "management"
    return "inference"


class SharedPortApi:
    """The HTTP handler of a shared port: each request goes to the API that owns its path."""

    def __init__(self, inference: Handler, management: Handler) -> None:
        self._apis = {"inference": inference, "management": management}

    async def __call__(self, request: HttpRequest) -> HttpResponse | StreamingResponse:
        return await self._apis[owner(request.path)](request)


def shared_check(inference: EarlyCheck | None, management: EarlyCheck | None) -> EarlyCheck | None:
    """The early check (keys, Host/Origin guard) of the API that owns the path."""
    if inference is None and management is None:
        return None
    checks = {"inference": inference, "management": management}

    def check(
        method: str, path: str, headers: list[tuple[str, str]], length: int | None
    ) -> HttpResponse | None:
        chosen = checks[owner(path)]
        return None if chosen is None else chosen(method, path, headers, length)

    return check
