"""The Open Inference Protocol (KServe v2) gRPC service, on the inference port.

Served when ``ts_open_inference_protocol=true``, under two names with the same messages:
TorchServe's ``org.pytorch.serve.grpc.openinference.GRPCInferenceService`` and the standard
``inference.GRPCInferenceService`` that tritonclient and KServe's clients call. ``ModelInfer``
runs the model like REST ``POST /v2/models/{m}/infer`` (see :mod:`emberserve.grpc.oip_codec`).
"""

from __future__ import annotations

from typing import Any

import orjson

from emberserve.errors import BadRequestError
from emberserve.grpc.errors import rpc_errors
from emberserve.grpc.generated import open_inference_grpc_pb2 as pb
from emberserve.grpc.inference_servicer import InferenceBackend
from emberserve.grpc.management_servicer import ManagementBackend
from emberserve.grpc.oip_codec import infer_response, request_document
from emberserve.inference import model_metadata, model_ready, new_request_id, server_metadata
from emberserve.workers.protocol import Input, Request

#: The standard KServe v2 / Triton service name (package ``inference``).
STANDARD_SERVICE_NAME = "inference.GRPCInferenceService"


class OpenInferenceServicer:
    """See the module docstring. Method names are the rpc names (hence CamelCase)."""

    def __init__(self, inference: InferenceBackend, management: ManagementBackend) -> None:
        self._inference = inference
        self._management = management

    @rpc_errors
    async def ServerLive(self, request: pb.ServerLiveRequest, context: Any) -> pb.ServerLiveResponse:  # noqa: N802
        return pb.ServerLiveResponse(live=True)

    @rpc_errors
    async def ServerReady(self, request: pb.ServerReadyRequest, context: Any) -> pb.ServerReadyResponse:  # noqa: N802
        # The same rule as /ping (TorchServe always says true).
        return pb.ServerReadyResponse(ready=self._inference.healthy())

    @rpc_errors
    async def ModelReady(self, request: pb.ModelReadyRequest, context: Any) -> pb.ModelReadyResponse:  # noqa: N802
        if not request.name:
            raise BadRequestError("Parameter name is required.")
        entry = self._inference.lookup(request.name, request.version or None)
        return pb.ModelReadyResponse(ready=model_ready(entry))

    @rpc_errors
    async def ServerMetadata(  # noqa: N802
        self, request: pb.ServerMetadataRequest, context: Any
    ) -> pb.ServerMetadataResponse:
        metadata = server_metadata()
        return pb.ServerMetadataResponse(
            name=metadata["name"], version=metadata["version"], extensions=metadata["extensions"]
        )

    @rpc_errors
    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: Any) -> pb.ModelMetadataResponse:  # noqa: N802
        if not request.name:
            raise BadRequestError("Parameter model_name is required.")
        self._inference.lookup(request.name, request.version or None)  # NOT_FOUND texts as REST
        versions = [str(d["modelVersion"]) for d in self._management.describe(request.name, "all")]
        metadata = model_metadata(request.name, versions)
        return pb.ModelMetadataResponse(
            name=metadata["name"], versions=metadata["versions"], platform=metadata["platform"]
        )

    @rpc_errors
    async def ModelInfer(self, request: pb.ModelInferRequest, context: Any) -> pb.ModelInferResponse:  # noqa: N802
        if not request.model_name:
            raise BadRequestError("Parameter model_name is required.")
        entry = self._inference.lookup(request.model_name, request.model_version or None)
        body = orjson.dumps(request_document(request))
        job = Request(new_request_id(), "predict", [], [Input("body", "application/json", body)])
        parts: list[bytes] = []
        result = await self._inference.predict(entry, job, lambda chunk: parts.append(chunk.body))
        parts.append(result.body)
        return infer_response(
            b"".join(parts),
            model_name=entry.name,
            model_version=entry.version,
            request_id=request.id,
            raw=bool(request.raw_input_contents),
        )
