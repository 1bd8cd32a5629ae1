"""The management API (port 8081): TorchServe's routes and answers (reference §4).

GET    /models                                  list (limit, next_page_token)
POST   /models                                  register (query parameters or a JSON body)
GET    /models/{m}[/{v}|/all][?customized=true] describe
PUT    /models/{m}[/{v}]                         scale workers
DELETE /models/{m}[/{v}]                         unregister
PUT    /models/{m}/{v}/set-default               set the default version
OPTIONS /, GET /api-description                  OpenAPI document; OPTIONS /models/{m} per model
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from urllib.parse import parse_qsl

import orjson

from emberserve.errors import (
    BadRequestError,
    MethodNotAllowedError,
    ModelApiDisabledError,
    NotFoundError,
    ServerError,
)
from emberserve.http.connection import HttpRequest, HttpResponse
from emberserve.http.inference_api import NOT_ALLOWED, NOT_FOUND
from emberserve.http.openapi import management_document, model_management_document
from emberserve.http.responses import error_response, json_response, status_response
from emberserve.inference import new_request_id
from emberserve.management import ManagementService, RegisterRequest

log = logging.getLogger("emberserve.management")

MODEL_API_OFF = (
    "Model API is disabled: registering and unregistering models is off by default. "
    "Start Ember with --enable-model-api or set enable_model_api=true in config.properties."
)


def _int(params: Mapping[str, object], key: str) -> int | None:
    """TorchServe's getIntParameter: an unparsable value silently means "not given" (logged here)."""
    value = params.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    try:
        return int(str(value))
    except ValueError:
        log.warning("Ignoring invalid integer for parameter %s: %.64r", key, value)
        return None


def _bool(params: Mapping[str, object], key: str, default: bool) -> bool:
    value = params.get(key)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() == "true"


def _params(request: HttpRequest) -> dict[str, object]:
    params: dict[str, object] = dict(parse_qsl(request.query, keep_blank_values=True))
    content_type = (request.header("content-type") or "").split(";")[0].strip().lower()
    if content_type == "application/json" and request.body:
        try:
            document = orjson.loads(request.body)
        except orjson.JSONDecodeError as exc:
            raise BadRequestError(f"Invalid JSON body: {exc}") from None
        if not isinstance(document, dict):
            raise BadRequestError("The JSON body must be an object.")
        # TorchServe: a JSON body replaces the query parameters.
        params = {str(k): v for k, v in document.items()}
    return params


class ManagementApi:
    """Callable HTTP handler for the management listener."""

    def __init__(self, service: ManagementService, *, model_api_enabled: bool) -> None:
        self._service = service
        self._model_api_enabled = model_api_enabled

    async def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = new_request_id()
        try:
            return await self._route(request, request_id)
        except ServerError as err:
            return error_response(err, request_id=request_id)

    async def _route(self, request: HttpRequest, rid: str) -> HttpResponse:
        segments = [s for s in request.path.split("/") if s]
        method = request.method
        if not segments:
            if method != "OPTIONS":
                raise MethodNotAllowedError(NOT_ALLOWED)
            return json_response(200, management_document(), request_id=rid)
        if segments == ["api-description"]:
            return json_response(200, management_document(), request_id=rid)
        if method == "OPTIONS" and segments[0] == "models" and len(segments) == 2:
            [described] = self._service.describe(segments[1], None)
            return json_response(200, model_management_document(str(described["modelName"])), request_id=rid)
        if segments[0] != "models" or len(segments) > 4:
            raise NotFoundError(NOT_FOUND)
        params = _params(request)
        if len(segments) == 1:
            if method == "GET":
                listing = self._service.list_models(_int(params, "limit"), _int(params, "next_page_token"))
                return json_response(200, listing, request_id=rid)
            if method == "POST":
                return await self._register(params, rid)
            raise MethodNotAllowedError(NOT_ALLOWED)
        name = segments[1]
        if len(segments) == 4:
            if segments[3] != "set-default":
                raise NotFoundError(NOT_FOUND)
            if method != "PUT":
                raise MethodNotAllowedError(NOT_ALLOWED)
            answer = await self._service.set_default(name, segments[2])
            return status_response(answer.status, answer.message, request_id=rid)
        version = segments[2] if len(segments) == 3 else None
        if method == "GET":
            if _bool(params, "customized", False):
                return await self._describe_customized(name, version, rid)
            return json_response(200, self._service.describe(name, version), request_id=rid)
        if method == "PUT":
            answer = await self._service.scale(
                name,
                version,
                _int(params, "min_worker"),
                _int(params, "max_worker"),
                synchronous=_bool(params, "synchronous", False),
                timeout_s=_int(params, "timeout"),
            )
            return status_response(answer.status, answer.message, request_id=rid)
        if method == "DELETE":
            if not self._model_api_enabled:
                raise ModelApiDisabledError(MODEL_API_OFF)
            answer = await self._service.unregister(name, version)
            return status_response(answer.status, answer.message, request_id=rid)
        raise MethodNotAllowedError(NOT_ALLOWED)

    async def _register(self, params: Mapping[str, object], rid: str) -> HttpResponse:
        if not self._model_api_enabled:
            raise ModelApiDisabledError(MODEL_API_OFF)
        url = params.get("url")
        req = RegisterRequest(
            url=None if url is None else str(url),
            model_name=str(params["model_name"]) if params.get("model_name") else None,
            handler=str(params["handler"]) if params.get("handler") else None,
            runtime=str(params["runtime"]) if params.get("runtime") else None,
            batch_size=_int(params, "batch_size"),
            max_batch_delay=_int(params, "max_batch_delay"),
            initial_workers=_int(params, "initial_workers"),
            # TorchServe's real REST default is synchronous=true (reference §4); "-1"/junk means false.
            synchronous=_bool(params, "synchronous", True),
            response_timeout=_int(params, "response_timeout"),
            startup_timeout=_int(params, "startup_timeout"),
            s3_sse_kms=_bool(params, "s3_sse_kms", False),
        )
        answer = await self._service.register(req)
        return status_response(answer.status, answer.message, request_id=rid)

    async def _describe_customized(self, name: str, version: str | None, rid: str) -> HttpResponse:
        described = self._service.describe(name, version)
        described[0]["customizedMetadata"] = await self._service.customized_metadata(name, version)
        return json_response(200, described, request_id=rid, phrase="")
