"""OpenAPI 3.0.1 descriptions of Ember's REST APIs (``OPTIONS /``, ``GET /api-description``).

The documents keep what TorchServe clients may read from TorchServe's own (title "TorchServe
APIs", version 0.12.0, the same paths and operations, per-model documents titled "RESTful API
for: {m}" and "RESTful Management API for: {m}") and describe Ember's real API: every route it
serves, with its parameters and the ``{code, type, message}`` error body. TorchServe's per-model
inference document names a path ``/prediction/{m}`` that does not exist; Ember's names
``/predictions/{m}``.

    >>> doc = inference_document()
    >>> doc["openapi"], doc["info"]["title"], "/ping" in doc["paths"]
    ('3.0.1', 'TorchServe APIs', True)
"""

from __future__ import annotations

from typing import Any

from emberserve import TORCHSERVE_COMPAT_VERSION
from emberserve.management import REGISTER_RANGES

__all__ = [
    "inference_document",
    "management_document",
    "metrics_document",
    "model_inference_document",
    "model_management_document",
]

Json = dict[str, Any]

_ERROR: Json = {
    "description": "Error",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["code", "type", "message"],
                "properties": {
                    "code": {"type": "integer", "description": "HTTP status code"},
                    "type": {"type": "string", "description": "Error type (TorchServe's exception name)"},
                    "message": {"type": "string", "description": "What went wrong and what to do"},
                },
            }
        }
    },
}
_STATUS: Json = {
    "description": "OK",
    "content": {
        "application/json": {
            "schema": {"type": "object", "properties": {"status": {"type": "string"}}, "required": ["status"]}
        }
    },
}
_ANY_JSON: Json = {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}
_PREDICTION: Json = {
    "description": "What the model's handler returned (any content type)",
    "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
}
_BINARY_BODY: Json = {
    "description": "Input for the model: raw bytes, JSON, text, multipart form data or form fields",
    "required": False,
    "content": {
        "*/*": {"schema": {"type": "string", "format": "binary"}},
        "multipart/form-data": {"schema": {"type": "object", "additionalProperties": True}},
    },
}
_JSON_BODY: Json = {
    "description": "A KServe request document",
    "required": True,
    "content": {"application/json": {"schema": {"type": "object"}}},
}


def _path_param(name: str, description: str) -> Json:
    return {
        "in": "path",
        "name": name,
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }


def _query(name: str, description: str, kind: str = "string", *, required: bool = False) -> Json:
    schema: Json = {"type": kind}
    if name in REGISTER_RANGES:
        schema["minimum"], schema["maximum"] = REGISTER_RANGES[name]
    return {
        "in": "query",
        "name": name,
        "required": required,
        "description": description,
        "schema": schema,
    }


def _operation(
    operation_id: str,
    summary: str,
    ok: Json,
    *,
    parameters: list[Json] | None = None,
    body: Json | None = None,
    errors: tuple[str, ...] = ("400", "404", "500", "503"),
) -> Json:
    op: Json = {"operationId": operation_id, "description": summary}
    if parameters:
        op["parameters"] = parameters
    if body is not None:
        op["requestBody"] = body
    op["responses"] = {"200": ok, **dict.fromkeys(errors, _ERROR)}
    return op


def _document(title: str, version: str, description: str, paths: Json) -> Json:
    return {
        "openapi": "3.0.1",
        "info": {"title": title, "description": description, "version": version},
        "paths": paths,
    }


_MODEL = _path_param("model_name", "Name of the model")
_VERSION = _path_param("model_version", "Version of the model")
_API_DESCRIPTION: Json = {
    "get": _operation("apiDescription", "This API document", _ANY_JSON, errors=()),
}


def _root() -> Json:
    return {
        "options": _operation(
            "apiDescriptionOptions", "This API document (OpenAPI 3.0.1)", _ANY_JSON, errors=()
        )
    }


def inference_document() -> Json:
    """The inference API (port 8080)."""
    predict = _operation(
        "predictions",
        "Run the model's default version on the request body",
        _PREDICTION,
        parameters=[_MODEL],
        body=_BINARY_BODY,
    )
    predict_version = _operation(
        "version_predictions",
        "Run one version of the model",
        _PREDICTION,
        parameters=[_MODEL, _VERSION],
        body=_BINARY_BODY,
    )
    explain = _operation(
        "explanations", "Explain the model's prediction", _PREDICTION, parameters=[_MODEL], body=_BINARY_BODY
    )
    paths: Json = {
        "/": _root(),
        "/ping": {
            "get": _operation(
                "ping",
                "Healthy (200) when every model has its minimum of workers, else Unhealthy (500)",
                _STATUS,
                errors=("500",),
            )
        },
        "/v1/models/{model_name}:predict": {
            "post": _operation(
                "kserve_v1_predict", "KServe v1 prediction", _ANY_JSON, parameters=[_MODEL], body=_JSON_BODY
            )
        },
        "/v1/models/{model_name}:explain": {
            "post": _operation(
                "kserve_v1_explain", "KServe v1 explanation", _ANY_JSON, parameters=[_MODEL], body=_JSON_BODY
            )
        },
        "/v1/models/{model_name}": {
            "get": _operation(
                "kserve_v1_model_status", "Whether the model is ready", _ANY_JSON, parameters=[_MODEL]
            )
        },
        "/v2/models/{model_name}/infer": {
            "post": _operation(
                "kserve_v2_infer",
                "Open Inference Protocol (KServe v2) inference",
                _ANY_JSON,
                parameters=[_MODEL],
                body=_JSON_BODY,
            )
        },
        "/v2/models/{model_name}/explain": {
            "post": _operation(
                "kserve_v2_explain", "KServe v2 explanation", _ANY_JSON, parameters=[_MODEL], body=_JSON_BODY
            )
        },
        "/v2/models/{model_name}/versions/{model_version}/infer": {
            "post": _operation(
                "kserve_v2_version_infer",
                "Open Inference Protocol inference of one version",
                _ANY_JSON,
                parameters=[_MODEL, _VERSION],
                body=_JSON_BODY,
            )
        },
        "/v2/models/{model_name}": {
            "get": _operation("kserve_v2_model_metadata", "Model metadata", _ANY_JSON, parameters=[_MODEL])
        },
        "/v2/models/{model_name}/ready": {
            "get": _operation(
                "kserve_v2_model_ready",
                "Model readiness (503 when not ready)",
                _ANY_JSON,
                parameters=[_MODEL],
            )
        },
        "/v2": {"get": _operation("kserve_v2_server_metadata", "Server metadata", _ANY_JSON, errors=())},
        "/v2/health/live": {"get": _operation("kserve_v2_live", "The server answers", _ANY_JSON, errors=())},
        "/v2/health/ready": {
            "get": _operation(
                "kserve_v2_ready", "Ready when /ping is Healthy (else 503)", _ANY_JSON, errors=("503",)
            )
        },
        "/predictions/{model_name}": {"post": predict},
        "/predictions/{model_name}/{model_version}": {"post": predict_version},
        "/explanations/{model_name}": {"post": explain},
        "/api-description": _API_DESCRIPTION,
    }
    return _document(
        "TorchServe APIs",
        TORCHSERVE_COMPAT_VERSION,
        "Ember's inference API, compatible with TorchServe's. Errors are {code, type, message}.",
        paths,
    )


def model_inference_document(name: str) -> Json:
    """``OPTIONS /predictions/{name}``: how to call one model."""
    paths: Json = {
        f"/predictions/{name}": {
            "post": _operation(
                f"predictions_{name}", f"Predictions of {name}", _PREDICTION, body=_BINARY_BODY
            )
        },
        f"/v1/models/{name}:predict": {
            "post": _operation(
                f"kserve_v1_{name}", f"KServe v1 predictions of {name}", _ANY_JSON, body=_JSON_BODY
            )
        },
        f"/v2/models/{name}/infer": {
            "post": _operation(
                f"kserve_v2_{name}", f"KServe v2 inference of {name}", _ANY_JSON, body=_JSON_BODY
            )
        },
    }
    return _document(f"RESTful API for: {name}", "1.0.0", f"How to run model {name}.", paths)


_REGISTER_PARAMETERS = [
    _query(
        "url",
        "Archive: a file in the model store, file://, http(s):// (allowed_urls) or s3://",
        required=True,
    ),
    _query("model_name", "Name to register under (default: the archive's)"),
    _query("handler", "Handler to use instead of the archive's"),
    _query("runtime", "python, python3 or LSP"),
    _query("batch_size", "Requests per batch", "integer"),
    _query("max_batch_delay", "Milliseconds to wait for a batch to fill", "integer"),
    _query("initial_workers", "Workers to start", "integer"),
    _query("synchronous", "Wait for the workers (default true)", "boolean"),
    _query("response_timeout", "Seconds a worker may take per batch", "integer"),
    _query("startup_timeout", "Seconds a worker may take to load", "integer"),
    _query("s3_sse_kms", "Download from S3 with SSE-KMS", "boolean"),
]
_SCALE_PARAMETERS = [
    _query("min_worker", "Workers to keep (default 1)", "integer"),
    _query("max_worker", "Upper bound of workers", "integer"),
    _query("synchronous", "Wait for the workers (default false)", "boolean"),
    _query("timeout", "Seconds removed workers may finish (0 = at once, -1 = wait)", "integer"),
]


def _accepted(operation: Json) -> Json:
    """Also document TorchServe's 202 (asynchronous register or scale: workers still starting)."""
    operation["responses"]["202"] = operation["responses"]["200"]
    return operation


def _management_model_paths(model: Json, version: Json | None) -> Json:
    base = "/models/{model_name}" if version is None else "/models/{model_name}/{model_version}"
    params = [model] if version is None else [model, version]
    return {
        base: {
            "get": _operation(
                "describeModel" if version is None else "versionDescribeModel",
                "Describe the model (version 'all' describes every version)",
                _ANY_JSON,
                parameters=[
                    *params,
                    _query("customized", "Add the handler's describe_handle output", "boolean"),
                ],
            ),
            "put": _accepted(
                _operation(
                    "setAutoScale" if version is None else "versionSetAutoScale",
                    "Scale workers (202 while asynchronous)",
                    _STATUS,
                    parameters=params + _SCALE_PARAMETERS,
                )
            ),
            "delete": _operation(
                "unregisterModel" if version is None else "versionUnregisterModel",
                "Unregister (needs enable_model_api)",
                _STATUS,
                parameters=params,
                errors=("403", "404", "405", "408", "500"),
            ),
        }
    }


def management_document() -> Json:
    """The management API (port 8081)."""
    paths: Json = {
        "/": _root(),
        "/models": {
            "get": _operation(
                "listModels",
                "Registered models, paginated",
                _ANY_JSON,
                parameters=[
                    _query("limit", "Models per page (1-100, default 100)", "integer"),
                    _query("next_page_token", "Where the page starts", "integer"),
                ],
            ),
            "post": _accepted(
                _operation(
                    "registerModel",
                    "Register a model archive (needs enable_model_api); parameters may also be a JSON body",
                    _STATUS,
                    parameters=_REGISTER_PARAMETERS,
                    errors=("400", "404", "405", "409", "500", "503"),
                )
            ),
        },
        **_management_model_paths(_MODEL, None),
        **_management_model_paths(_MODEL, _VERSION),
        "/models/{model_name}/{model_version}/set-default": {
            "put": _operation(
                "setDefault", "Make a version the default", _STATUS, parameters=[_MODEL, _VERSION]
            )
        },
        "/token": {
            "get": _operation(
                "rotateToken",
                "Replace the inference or management key (needs the API key)",
                {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}},
                parameters=[_query("type", "inference or management", required=True)],
                errors=("400", "404"),  # 404: token authorization is off
            )
        },
        "/api-description": _API_DESCRIPTION,
    }
    return _document(
        "TorchServe APIs",
        TORCHSERVE_COMPAT_VERSION,
        "Ember's management API, compatible with TorchServe's. Errors are {code, type, message}.",
        paths,
    )


def model_management_document(name: str) -> Json:
    """``OPTIONS /models/{name}``: managing one model."""
    paths: Json = {}
    for template, operations in _management_model_paths(_MODEL, None).items():
        concrete = {
            verb: {**op, "parameters": [p for p in op.get("parameters", []) if p["name"] != "model_name"]}
            for verb, op in operations.items()
        }
        paths[template.replace("{model_name}", name)] = concrete
    return _document(f"RESTful Management API for: {name}", "1.0.0", f"How to manage model {name}.", paths)


def metrics_document() -> Json:
    """The metrics API (port 8082)."""
    metrics = _operation(
        "metrics",
        "Prometheus text exposition (empty with metrics_mode=log)",
        {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}},
        parameters=[
            {
                "in": "query",
                "name": "name[]",
                "required": False,
                "description": "Only these metric names (repeatable)",
                "schema": {"type": "array", "items": {"type": "string"}},
            }
        ],
        errors=(),
    )
    return _document(
        "TorchServe APIs", TORCHSERVE_COMPAT_VERSION, "Ember's metrics API.", {"/metrics": {"get": metrics}}
    )
