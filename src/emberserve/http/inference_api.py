"""The inference API (port 8080): TorchServe's routes, request → job → response (reference §3).

Routes (any method is accepted on prediction routes, as TorchServe does)::

    OPTIONS /, GET /api-description              OpenAPI document; OPTIONS /predictions/{m} per model
    /ping                                        health
    /predictions/{m}[/{v}[/extra/path]]          predict (extra path → ``url_path`` header)
    /explanations/{m}[/{v}[/extra/path]]         explain
    /v1/models/{m}:predict | :explain            KServe v1;  GET /v1/models/{m} → status
    /v2/models/{m}[/versions/{v}]/infer|explain  KServe v2 / Open Inference Protocol
    GET /v2, /v2/health/live|ready               server metadata, liveness, readiness
    GET /v2/models/{m}[/versions/{v}][/ready]    model metadata, readiness
    /{m}/predict, /{m}/{v}/predict               legacy
    /invocations?model_name=m, /models/{m}/invoke  SageMaker style

The KServe v2 readiness answers tell the truth (TorchServe always says ready): 503 with
``"ready": false`` while not ready, so probes and ``tritonclient`` see it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from emberserve.errors import (
    BadRequestError,
    MethodNotAllowedError,
    NotFoundError,
    ServerError,
)
from emberserve.http.connection import HttpRequest, HttpResponse, StreamingResponse
from emberserve.http.encoding import body_inputs, form_inputs
from emberserve.http.openapi import inference_document, model_inference_document
from emberserve.http.responses import CACHE_HEADERS, error_response, json_response
from emberserve.inference import (
    InferenceService,
    model_metadata,
    model_ready,
    new_request_id,
    server_metadata,
)
from emberserve.registry import ModelVersion
from emberserve.workers.protocol import Input, Request, RequestKind, Result

NOT_FOUND = "Requested resource is not found, please refer to API document."
NOT_ALLOWED = "Requested method is not allowed, please refer to API document."


class InferenceApi:
    """Callable HTTP handler for the inference listener."""

    def __init__(self, service: InferenceService) -> None:
        self._service = service

    async def __call__(self, request: HttpRequest) -> HttpResponse | StreamingResponse:
        request_id = new_request_id()
        try:
            response = await self._route(request, request_id)
        except ServerError as err:
            response = error_response(err, request_id=request_id)
        if self._service.metrics is not None:
            self._service.metrics.http_status(response.status)
        return response

    async def _route(self, request: HttpRequest, request_id: str) -> HttpResponse | StreamingResponse:
        segments = [s for s in request.path.split("/") if s]
        method = request.method
        if not segments:
            if method != "OPTIONS":
                raise MethodNotAllowedError(NOT_ALLOWED)
            return json_response(200, inference_document(), request_id=request_id)
        head = segments[0]
        if head == "api-description" and len(segments) == 1:
            return json_response(200, inference_document(), request_id=request_id)
        if method == "OPTIONS" and head == "predictions" and len(segments) == 2:
            entry = self._service.lookup(segments[1], None)
            return json_response(200, model_inference_document(entry.name), request_id=request_id)
        if head == "ping" and len(segments) == 1:
            healthy = self._service.healthy()
            return json_response(
                200 if healthy else 500,
                {"status": "Healthy" if healthy else "Unhealthy"},
                request_id=request_id,
            )
        if head in ("predictions", "explanations") and len(segments) >= 2:
            version = segments[2] if len(segments) > 2 else None
            url_path = "/".join(segments[3:])
            kind: RequestKind = "explain" if head == "explanations" else "predict"
            extra = [("explain", "True" if kind == "explain" else "False"), ("url_path", url_path)]
            return await self._predict(request, request_id, segments[1], version, kind, extra)
        if head == "v1" and len(segments) == 3 and segments[1] == "models":
            return await self._kserve_v1(request, request_id, segments[2])
        if head == "v2":
            return await self._kserve_v2(request, request_id, segments[1:])
        if head == "invocations" and len(segments) == 1:
            return await self._invocations(request, request_id)
        if head == "models" and len(segments) == 3 and segments[2] == "invoke":
            return await self._predict(request, request_id, segments[1], None, "predict", [])
        if len(segments) in (2, 3) and segments[-1] == "predict":
            version = segments[1] if len(segments) == 3 else None
            return await self._predict(request, request_id, segments[0], version, "predict", [])
        del method
        raise NotFoundError(NOT_FOUND)

    async def _kserve_v1(
        self, request: HttpRequest, request_id: str, target: str
    ) -> HttpResponse | StreamingResponse:
        name, _, verb = target.partition(":")
        if not verb:
            if request.method != "GET":
                raise MethodNotAllowedError(NOT_ALLOWED)
            entry = self._service.lookup(name, None)
            return json_response(
                200, {"name": entry.name, "ready": entry.pool.live_workers > 0}, request_id=request_id
            )
        if verb not in ("predict", "explain"):
            raise NotFoundError(NOT_FOUND)
        kind: RequestKind = "explain" if verb == "explain" else "predict"
        return await self._predict(
            request, request_id, name, None, kind, [("explain", "True" if kind == "explain" else "False")]
        )

    async def _kserve_v2(
        self, request: HttpRequest, request_id: str, rest: list[str]
    ) -> HttpResponse | StreamingResponse:
        if not rest:
            self._only_get(request)
            return json_response(200, server_metadata(), request_id=request_id)
        if rest in (["health", "live"], ["health", "ready"]):
            self._only_get(request)
            if rest[1] == "live":
                return json_response(200, {"live": True}, request_id=request_id)
            ready = self._service.healthy()
            return json_response(200 if ready else 503, {"ready": ready}, request_id=request_id)
        if rest[0] != "models" or len(rest) < 2:
            raise NotFoundError(NOT_FOUND)
        name, tail, version = rest[1], rest[2:], None
        if len(tail) >= 2 and tail[0] == "versions":
            version, tail = tail[1], tail[2:]
        if tail in (["infer"], ["explain"]):
            if request.header("inference-header-content-length") is not None:
                raise BadRequestError(
                    "The binary tensor data extension is not supported: send tensors as JSON "
                    "(tritonclient: set_data_from_numpy(..., binary_data=False))"
                )
            kind: RequestKind = "explain" if tail == ["explain"] else "predict"
            extra = [("explain", "True" if kind == "explain" else "False")]
            return await self._predict(request, request_id, name, version, kind, extra)
        if tail == ["ready"]:
            self._only_get(request)
            entry = self._service.lookup(name, version)
            ready = model_ready(entry)
            return json_response(
                200 if ready else 503, {"name": entry.name, "ready": ready}, request_id=request_id
            )
        if not tail:
            self._only_get(request)
            entry = self._service.lookup(name, version)
            return json_response(
                200, model_metadata(entry.name, self._service.versions(entry.name)), request_id=request_id
            )
        raise NotFoundError(NOT_FOUND)

    @staticmethod
    def _only_get(request: HttpRequest) -> None:
        if request.method not in ("GET", "HEAD"):
            raise MethodNotAllowedError(NOT_ALLOWED)

    async def _invocations(self, request: HttpRequest, request_id: str) -> HttpResponse | StreamingResponse:
        params = form_inputs(request.query)
        names = [p.value.decode("utf-8", "replace") for p in params if p.name == "model_name"]
        if not names:
            raise BadRequestError("Parameter model_name is required.")
        inputs = params + body_inputs(request.header("content-type"), request.body)
        return await self._predict(request, request_id, names[-1], None, "predict", [], inputs=inputs)

    async def _predict(
        self,
        request: HttpRequest,
        request_id: str,
        name: str,
        version: str | None,
        kind: RequestKind,
        extra_headers: list[tuple[str, str]],
        *,
        inputs: list[Input] | None = None,
    ) -> HttpResponse | StreamingResponse:
        entry = self._service.lookup(name, version)
        if inputs is None:
            inputs = body_inputs(request.header("content-type"), request.body)
        job_request = Request(request_id, kind, [*request.headers, *extra_headers], inputs)
        return await self.run(entry, job_request, version)

    async def run(
        self, entry: ModelVersion, job_request: Request, requested_version: str | None = None
    ) -> HttpResponse | StreamingResponse:
        """Run one job; answer with a plain response, or stream when the handler sends chunks.

        One future resolves at the first intermediate chunk or at the end, whichever comes
        first (no queue, reader task or asyncio.wait per request: they were a tenth of the
        frontend's time in the echo benchmark); a queue exists only once a stream has begun.
        """
        loop = asyncio.get_running_loop()
        first: asyncio.Future[Result | None] = loop.create_future()
        chunks: asyncio.Queue[Result | None] | None = None

        def on_chunk(result: Result) -> None:
            nonlocal chunks
            if chunks is not None:
                chunks.put_nowait(result)
            elif not first.done():  # not cancelled: the client still waits
                chunks = asyncio.Queue()
                first.set_result(result)

        def on_done(_task: asyncio.Future[Result]) -> None:
            if chunks is not None:
                chunks.put_nowait(None)
            elif not first.done():
                first.set_result(None)

        task = asyncio.ensure_future(
            self._service.predict(entry, job_request, on_chunk, requested_version=requested_version)
        )
        task.add_done_callback(on_done)
        try:
            chunk = await first
        except asyncio.CancelledError:
            task.cancel()
            raise
        if chunk is None:
            return _result_response(task.result(), job_request.request_id)  # raises ServerError
        assert chunks is not None  # made with the first chunk
        return StreamingResponse(
            chunk.status,
            _stream(chunk, chunks, task),
            _result_headers(chunk, job_request.request_id),
            chunk.phrase,
        )


async def _stream(
    first: Result, chunks: asyncio.Queue[Result | None], task: asyncio.Future[Result]
) -> AsyncIterator[bytes]:
    """Intermediate bodies in order, then the final one (an error ends the stream early).

    Closed early (the client went away), it gives up the job, which cancels the handler's
    stream in the worker.
    """
    try:
        yield first.body
        while True:
            item = await chunks.get()
            if item is None:
                break
            yield item.body
        with contextlib.suppress(ServerError):
            final = task.result()
            yield final.body
    finally:
        if not task.done():
            task.cancel()


def _result_headers(result: Result, request_id: str) -> list[tuple[str, str]]:
    headers = [("x-request-id", request_id), *CACHE_HEADERS]
    if result.content_type:
        headers.insert(0, ("content-type", result.content_type))
    headers.extend(result.headers)
    return headers


def _result_response(result: Result, request_id: str) -> HttpResponse:
    # TorchServe sends successful predictions with an empty reason phrase unless the handler set one.
    return HttpResponse(result.status, result.body, _result_headers(result, request_id), result.phrase or "")
