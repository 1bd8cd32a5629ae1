"""TorchServe's ``InferenceAPIsService``: Ping, Predictions, StreamPredictions, StreamPredictions2.

Each ``PredictionsRequest`` becomes one job for :class:`~emberserve.inference.InferenceService`,
exactly as a REST prediction does, except for how the handler's row is built: every key of the
``input`` map is one field, its bytes passed through undecoded (content type ``""``), and no
headers at all -- what TorchServe's handlers receive from gRPC (reference §5).

Cancellation: when the client cancels or its deadline passes, grpc.aio cancels the method's task;
:meth:`InferenceService.predict` then cancels the job, so a queued job never reaches a worker and
the result of a running one is dropped. No worker is killed or left waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any, Protocol

from emberserve.errors import BadRequestError, InsufficientStorageError, ServerError
from emberserve.grpc.errors import grpc_code, rich_status, rpc_errors, rpc_stream_errors
from emberserve.grpc.generated import inference_pb2
from emberserve.http.responses import json_body
from emberserve.inference import new_request_id
from emberserve.registry import ModelVersion
from emberserve.workers.protocol import Input, Request, Result

#: Input key a StreamPredictions2 client sets to b"true" to start a sequence without an id.
SEQUENCE_START_KEY = "ts_request_sequence_start"


class InferenceBackend(Protocol):
    """What the gRPC edge needs from :class:`~emberserve.inference.InferenceService`."""

    def lookup(self, name: str, version: str | None) -> ModelVersion: ...

    async def predict(
        self, entry: ModelVersion, request: Request, on_chunk: Callable[[Result], None] | None = None
    ) -> Result: ...

    def healthy(self) -> bool: ...


def health_document(healthy: bool) -> str:
    """Ping's ``health`` text: REST /ping's JSON without the trailing newline (as TorchServe sends it)."""
    return json_body({"status": "Healthy" if healthy else "Unhealthy"}).decode().rstrip("\n")


def job_request(request: inference_pb2.PredictionsRequest) -> Request:
    """The worker request for a gRPC prediction: one undecoded input per map key, no headers."""
    inputs = [Input(key, "", bytes(value)) for key, value in request.input.items()]
    return Request(new_request_id(), "predict", [], inputs)


class InferenceServicer:
    """See the module docstring. Method names are the rpc names (hence CamelCase).

    ``max_backlog_bytes`` bounds the streamed parts buffered for a client that does not read them:
    past it the call ends with RESOURCE_EXHAUSTED and the job is cancelled.
    """

    def __init__(self, service: InferenceBackend, *, max_backlog_bytes: int) -> None:
        self._service = service
        self._max_backlog = max_backlog_bytes

    @rpc_errors
    async def Ping(self, request: Any, context: Any) -> inference_pb2.TorchServeHealthResponse:  # noqa: N802
        return inference_pb2.TorchServeHealthResponse(health=health_document(self._service.healthy()))

    @rpc_errors
    async def Predictions(  # noqa: N802
        self, request: inference_pb2.PredictionsRequest, context: Any
    ) -> inference_pb2.PredictionResponse:
        entry = self._lookup(request)
        # A handler that streams on a unary call: the answer is the whole stream, as REST sends it.
        parts: list[bytes] = []
        result = await self._service.predict(
            entry, job_request(request), lambda chunk: parts.append(chunk.body)
        )
        parts.append(result.body)
        return inference_pb2.PredictionResponse(prediction=b"".join(parts))

    @rpc_stream_errors
    async def StreamPredictions(  # noqa: N802
        self, request: inference_pb2.PredictionsRequest, context: Any
    ) -> AsyncGenerator[inference_pb2.PredictionResponse, None]:
        entry = self._lookup(request)
        # aclosing: the job is cancelled as soon as the call ends, however it ends.
        async with contextlib.aclosing(self._stream(entry, job_request(request))) as parts:
            async for body in parts:
                yield inference_pb2.PredictionResponse(prediction=body)

    @rpc_stream_errors
    async def StreamPredictions2(  # noqa: N802
        self, request_iterator: AsyncIterator[inference_pb2.PredictionsRequest], context: Any
    ) -> AsyncGenerator[inference_pb2.PredictionResponse, None]:
        # Errors about one message are answered in the stream (PredictionResponse.status), as
        # TorchServe does, so the client can go on sending.
        async for request in request_iterator:
            try:
                answer = await self._sequence_predict(request)
            except ServerError as err:
                answer = sequence_error(request, err)
            yield answer

    # -- helpers ----------------------------------------------------------------------------------

    def _lookup(self, request: inference_pb2.PredictionsRequest) -> ModelVersion:
        if not request.model_name:
            raise BadRequestError("Parameter model_name is required.")
        return self._service.lookup(request.model_name, request.model_version or None)

    async def _sequence_predict(
        self, request: inference_pb2.PredictionsRequest
    ) -> inference_pb2.PredictionResponse:
        """One message of a sequence: TorchServe's checks, then the model must be a sequence model."""
        starts = request.input.get(SEQUENCE_START_KEY, b"").strip().lower() == b"true"
        if not request.sequence_id and not starts:
            raise BadRequestError("Parameter sequenceId is required.")
        entry = self._lookup(request)
        # Ember has no sequence (stateful) models yet: a sequence cannot be served by any model.
        raise BadRequestError(
            f'Model "{entry.name}" version {entry.version} is not a sequence (stateful) model; '
            "use Predictions or StreamPredictions for it."
        )

    async def _stream(self, entry: ModelVersion, request: Request) -> AsyncGenerator[bytes, None]:
        """The handler's intermediate parts as they come, then its final answer."""
        backlog = _Backlog(self._max_backlog)
        task = asyncio.ensure_future(self._service.predict(entry, request, backlog.put))
        task.add_done_callback(lambda _task: backlog.close())
        try:
            while (part := await backlog.get()) is not None:
                yield part
            yield task.result().body  # raises the job's ServerError, if any
        finally:
            if not task.done():
                task.cancel()
            elif not task.cancelled():
                task.exception()  # retrieved: the error (if any) was reported or superseded


def sequence_error(
    request: inference_pb2.PredictionsRequest, err: ServerError
) -> inference_pb2.PredictionResponse:
    """A StreamPredictions2 message carrying ``err`` (the stream stays open)."""
    answer = inference_pb2.PredictionResponse(status=rich_status(err, grpc_code(err), err.message))
    if request.sequence_id:
        answer.sequence_id = request.sequence_id
    return answer


class _Backlog:
    """Streamed parts not yet sent to the client, bounded in bytes."""

    def __init__(self, max_bytes: int) -> None:
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._bytes = 0
        self._max = max_bytes
        self._overflow = False

    def put(self, chunk: Result) -> None:
        if self._overflow:
            return
        self._bytes += len(chunk.body)
        if self._bytes > self._max:
            self._overflow = True
            self._queue.put_nowait(None)
            return
        self._queue.put_nowait(chunk.body)

    def close(self) -> None:
        self._queue.put_nowait(None)

    async def get(self) -> bytes | None:
        part = await self._queue.get()
        if part is None and self._overflow:
            raise InsufficientStorageError(
                f"The client did not read the streamed answer: more than {self._max} bytes were waiting."
            )
        if part is not None:
            self._bytes -= len(part)
        return part
