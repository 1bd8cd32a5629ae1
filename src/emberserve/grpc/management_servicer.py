"""TorchServe's ``ManagementAPIsService``: the REST management API over gRPC.

Every answer is ``ManagementResponse.msg``: the status text REST puts in ``{"status": …}``, or the
JSON document REST sends (pretty printed the same way, without the trailing newline -- as
TorchServe does). proto3 cannot tell "0" from "not given", so, as in TorchServe, a numeric field
``<= 0`` and an empty string mean "not given".
"""

from __future__ import annotations

from typing import Any, Protocol

from emberserve.errors import BadRequestError, ModelApiDisabledError
from emberserve.grpc.errors import rpc_errors
from emberserve.grpc.generated import management_pb2
from emberserve.http.management_api import MODEL_API_OFF
from emberserve.http.responses import json_body
from emberserve.management import Answer, RegisterRequest


class ManagementBackend(Protocol):
    """What the gRPC edge needs from :class:`~emberserve.management.ManagementService`."""

    async def register(self, req: RegisterRequest) -> Answer: ...

    async def scale(
        self,
        name: str,
        version: str | None,
        min_worker: int | None,
        max_worker: int | None,
        *,
        synchronous: bool,
        timeout_s: int | None = None,
    ) -> Answer: ...

    def describe(self, name: str, version: str | None) -> list[dict[str, object]]: ...

    async def customized_metadata(self, name: str, version: str | None) -> object: ...

    def list_models(self, limit: int | None, next_page_token: int | None) -> dict[str, object]: ...

    async def set_default(self, name: str, version: str) -> Answer: ...

    async def unregister(self, name: str, version: str | None) -> Answer: ...


def json_msg(document: object) -> management_pb2.ManagementResponse:
    """A JSON answer formatted as REST's body, minus the trailing newline."""
    return management_pb2.ManagementResponse(msg=json_body(document).decode().rstrip("\n"))


def given(value: int) -> int | None:
    """A proto3 number as an optional parameter (TorchServe: only values > 0 count)."""
    return value if value > 0 else None


def required_name(name: str) -> str:
    if not name:
        raise BadRequestError("Parameter model_name is required.")
    return name


class ManagementServicer:
    """See the module docstring. Method names are the rpc names (hence CamelCase).

    ``model_api_enabled`` gates RegisterModel and UnregisterModel (PERMISSION_DENIED when off).
    """

    def __init__(self, service: ManagementBackend, *, model_api_enabled: bool) -> None:
        self._service = service
        self._model_api_enabled = model_api_enabled

    @rpc_errors
    async def DescribeModel(  # noqa: N802
        self, request: management_pb2.DescribeModelRequest, context: Any
    ) -> management_pb2.ManagementResponse:
        name = required_name(request.model_name)
        version = request.model_version or None
        described = self._service.describe(name, version)
        if request.customized and version != "all":
            described[0]["customizedMetadata"] = await self._service.customized_metadata(name, version)
        return json_msg(described)

    @rpc_errors
    async def ListModels(  # noqa: N802
        self, request: management_pb2.ListModelsRequest, context: Any
    ) -> management_pb2.ManagementResponse:
        # TorchServe pages with limit=0 when the field is left out (so it always answers an empty
        # list); Ember reads 0 as "not given": the default page of 100, as REST without ?limit.
        return json_msg(self._service.list_models(given(request.limit), given(request.next_page_token)))

    @rpc_errors
    async def RegisterModel(  # noqa: N802
        self, request: management_pb2.RegisterModelRequest, context: Any
    ) -> management_pb2.ManagementResponse:
        if not self._model_api_enabled:
            raise ModelApiDisabledError(MODEL_API_OFF)
        answer = await self._service.register(
            RegisterRequest(
                url=request.url or None,
                model_name=request.model_name or None,
                handler=request.handler or None,
                runtime=request.runtime or None,
                batch_size=given(request.batch_size),
                max_batch_delay=given(request.max_batch_delay),
                initial_workers=given(request.initial_workers),
                synchronous=request.synchronous,
                response_timeout=given(request.response_timeout),
                startup_timeout=given(request.startup_timeout),
                s3_sse_kms=request.s3_sse_kms,
            )
        )
        return management_pb2.ManagementResponse(msg=answer.message)

    @rpc_errors
    async def ScaleWorker(  # noqa: N802
        self, request: management_pb2.ScaleWorkerRequest, context: Any
    ) -> management_pb2.ManagementResponse:
        # As TorchServe: min_worker <= 0 means 1 and max_worker <= 0 means min_worker (proto3
        # cannot say "0 workers"; scale to zero with REST). timeout 0 is "not given" here, not
        # "kill at once": a client that leaves it out must not have its workers killed mid-batch.
        answer = await self._service.scale(
            required_name(request.model_name),
            request.model_version or None,
            given(request.min_worker),
            given(request.max_worker),
            synchronous=request.synchronous,
            timeout_s=request.timeout if request.timeout != 0 else None,
        )
        return management_pb2.ManagementResponse(msg=answer.message)

    @rpc_errors
    async def SetDefault(  # noqa: N802
        self, request: management_pb2.SetDefaultRequest, context: Any
    ) -> management_pb2.ManagementResponse:
        if not request.model_version:
            raise BadRequestError("Parameter model_version is required.")
        answer = await self._service.set_default(required_name(request.model_name), request.model_version)
        return management_pb2.ManagementResponse(msg=answer.message)

    @rpc_errors
    async def UnregisterModel(  # noqa: N802
        self, request: management_pb2.UnregisterModelRequest, context: Any
    ) -> management_pb2.ManagementResponse:
        if not self._model_api_enabled:
            raise ModelApiDisabledError(MODEL_API_OFF)
        answer = await self._service.unregister(
            required_name(request.model_name), request.model_version or None
        )
        return management_pb2.ManagementResponse(msg=answer.message)
