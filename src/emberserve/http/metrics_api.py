"""The metrics API (port 8082): ``GET /metrics`` (any method, as TorchServe).

In TorchServe's default ``log`` mode the answer is an empty 200 (metrics go to log files).
"""

from __future__ import annotations

from emberserve.errors import NotFoundError, ServerError
from emberserve.http.connection import HttpRequest, HttpResponse
from emberserve.http.inference_api import NOT_FOUND
from emberserve.http.openapi import metrics_document
from emberserve.http.responses import error_response, json_response

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class MetricsApi:
    """Callable HTTP handler for the metrics listener."""

    def __init__(self, mode: str) -> None:
        self._mode = mode

    async def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            if request.path in ("/", "") and request.method == "OPTIONS":
                return json_response(200, metrics_document())
            if request.path.rstrip("/") != "/metrics":
                raise NotFoundError(NOT_FOUND)
            return HttpResponse(200, b"", [("content-type", PROMETHEUS_CONTENT_TYPE)])
        except ServerError as err:
            return error_response(err)
