"""The metrics API (port 8082): ``GET /metrics`` (any method, as TorchServe).

In TorchServe's default ``log`` mode the answer is an empty 200 (metrics go to log files); with
``metrics_mode=prometheus`` it is the text exposition, ``?name[]=a&name[]=b`` keeping only those
families (an unknown name gives an empty 200).
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from emberserve.errors import NotFoundError, ServerError
from emberserve.http.connection import HttpRequest, HttpResponse
from emberserve.http.inference_api import NOT_FOUND
from emberserve.http.openapi import metrics_document
from emberserve.http.responses import error_response, json_response
from emberserve.metrics import MetricsRecorder

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class MetricsApi:
    """Callable HTTP handler for the metrics listener."""

    def __init__(self, recorder: MetricsRecorder) -> None:
        self._recorder = recorder

    async def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            if request.path in ("/", "") and request.method == "OPTIONS":
                return json_response(200, metrics_document())
            if request.path.rstrip("/") != "/metrics":
                raise NotFoundError(NOT_FOUND)
            names = [value for key, value in parse_qsl(request.query) if key in ("name[]", "name")]
            body = self._recorder.render(names)
            return HttpResponse(200, body, [("content-type", PROMETHEUS_CONTENT_TYPE)])
        except ServerError as err:
            return error_response(err)
