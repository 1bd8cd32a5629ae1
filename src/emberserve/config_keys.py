"""The keys of ``config.properties``: their value types, parsers and environment names.

:mod:`emberserve.config` decides *where* a value comes from (file, ``TS_*`` environment, CLI);
this module decides *what* a raw string means. Every key is listed once in :data:`KEYS` with the
parser that turns its text into a typed value, and with the ``TS_*`` environment variable that may
override it (TorchServe derives those names from its Java constants, so a few differ from the
upper-cased key: ``token_expiration_min`` is ``TS_TOKEN_EXPIRATION_TIME_MIN``).

A parser raises :class:`InvalidValue` with a description of what is allowed; the loader turns it
into a :class:`~emberserve.errors.ConfigError` naming the key, the value and its source.

Example::

    >>> parse_listen_address("http://[::1]:8080")
    ListenAddress(scheme='http', host='::1', port=8080, path='')
    >>> KEYS["job_queue_size"].parse("25", Path("."))
    25
    >>> KEYS["token_expiration_min"].env
    'TS_TOKEN_EXPIRATION_TIME_MIN'
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any

__all__ = [
    "IGNORED_KEYS",
    "KEYS",
    "InvalidValue",
    "KeySpec",
    "ListenAddress",
    "ModelSettings",
    "parse_listen_address",
    "parse_models_json",
]

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1


class InvalidValue(ValueError):
    """A raw value does not fit its key; the message says what is allowed."""


# -- listen addresses -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ListenAddress:
    """Where one HTTP listener binds: ``http://host:port``, ``https://host:port`` or ``unix:/path``.

    >>> ListenAddress("http", "127.0.0.1", 8080, "").url
    'http://127.0.0.1:8080'
    >>> ListenAddress("https", "::", 8443, "").url, ListenAddress("https", "::", 8443, "").is_wildcard
    ('https://[::]:8443', True)
    """

    scheme: str  # "http" | "https" | "unix"
    host: str  # "" for unix
    port: int  # 0 for unix
    path: str  # unix socket path, else ""

    @property
    def url(self) -> str:
        """The address written back as TorchServe accepts it (IPv6 hosts in brackets)."""
        if self.scheme == "unix":
            return f"unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def is_wildcard(self) -> bool:
        """True when the listener accepts connections on every interface (SECURITY.md Z12)."""
        return self.scheme != "unix" and self.host in ("0.0.0.0", "::", "")  # noqa: S104 - detecting it


# TorchServe's ADDRESS_PATTERN is ``((https|http)://([^:^/]+)(:([0-9]+))?)|(unix:(/.*))``, matched
# whole and case-insensitively. Ember also accepts bracketed IPv6 hosts, which TorchServe's host
# group (no ':') cannot express.
_ADDRESS = re.compile(
    r"(?P<scheme>https?)://(?:\[(?P<ipv6>[0-9A-Fa-f:.]+)\]|(?P<host>[^:/\[\]]+))(?::(?P<port>[0-9]{1,5}))?"
    r"|unix:(?P<path>/.*)",
    re.IGNORECASE,
)
_HOSTNAME = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?\.?")
# Without a port, TorchServe's Connector.parse picks these per listener and scheme.
_DEFAULT_PORTS = {
    "inference": {"http": 80, "https": 443},
    "management": {"http": 8081, "https": 8444},
    "metrics": {"http": 8082, "https": 8445},
}
_ADDRESS_FORMS = "http://HOST:PORT, https://HOST:PORT (IPv6 as [::1]) or unix:/ABSOLUTE/PATH"


def parse_listen_address(text: str, *, role: str = "inference") -> ListenAddress:
    """Parse a listener address; ``role`` ("inference", "management", "metrics") picks the port used
    when the address has none, as TorchServe does (80/443, 8081/8444, 8082/8445).

    Raises :class:`InvalidValue` for anything else.

    >>> parse_listen_address("https://0.0.0.0", role="management")
    ListenAddress(scheme='https', host='0.0.0.0', port=8444, path='')
    >>> parse_listen_address("unix:/run/ember.sock").url
    'unix:/run/ember.sock'
    """
    match = _ADDRESS.fullmatch(text.strip())
    if match is None:
        raise InvalidValue(f"expected {_ADDRESS_FORMS}")
    if match["path"] is not None:
        return ListenAddress("unix", "", 0, match["path"])
    scheme = match["scheme"].lower()
    if match["ipv6"] is not None:
        host = _ipv6(match["ipv6"])
    else:
        host = match["host"]
        if not _HOSTNAME.fullmatch(host):
            raise InvalidValue(f"{host!r} is not a host name or IP address; expected {_ADDRESS_FORMS}")
    port = (
        int(match["port"]) if match["port"] else _DEFAULT_PORTS.get(role, _DEFAULT_PORTS["inference"])[scheme]
    )
    if port > 65535:
        raise InvalidValue(f"port {port} is out of range 0-65535")
    return ListenAddress(scheme, host, port, "")


def _ipv6(text: str) -> str:
    try:
        return str(ipaddress.IPv6Address(text))
    except ValueError:
        raise InvalidValue(f"[{text}] is not an IPv6 address") from None


def parse_host(raw: str, _cwd: Path) -> str:
    """A bind host for gRPC: an IPv4/IPv6 literal (no brackets) or a host name."""
    text = raw.strip()
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    if _HOSTNAME.fullmatch(text):
        return text
    raise InvalidValue("expected an IP address (127.0.0.1, ::1) or a host name")


# -- scalar parsers -----------------------------------------------------------------------------------

Parser = Callable[[str, Path], Any]


def parse_bool(raw: str, _cwd: Path) -> bool:
    """``true``/``false`` in any case (TorchServe reads anything but "true" as false; Ember refuses it)."""
    text = raw.strip().lower()
    if text in ("true", "false"):
        return text == "true"
    raise InvalidValue("expected true or false")


def int_parser(minimum: int, maximum: int = INT32_MAX) -> Parser:
    """A parser for a whole number in ``[minimum, maximum]`` (decimal digits, optional sign)."""

    def parse(raw: str, _cwd: Path) -> int:
        text = raw.strip()
        if not re.fullmatch(r"[+-]?[0-9]{1,19}", text):
            raise InvalidValue(f"expected a whole number from {minimum} to {maximum}")
        value = int(text)
        if not minimum <= value <= maximum:
            raise InvalidValue(f"expected a whole number from {minimum} to {maximum}")
        return value

    return parse


def float_parser(minimum: float) -> Parser:
    """A parser for a finite decimal number ``>= minimum``."""

    def parse(raw: str, _cwd: Path) -> float:
        text = raw.strip()
        if not re.fullmatch(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)", text) or float(text) < minimum:
            raise InvalidValue(f"expected a number >= {minimum:g}")
        return float(text)

    return parse


def choice_parser(*allowed: str) -> Parser:
    """A parser for one of ``allowed`` (case-insensitive; whitespace removed, as TorchServe does
    for ``metrics_mode``); returns the lower-case form."""

    def parse(raw: str, _cwd: Path) -> str:
        text = re.sub(r"\s", "", raw).lower()
        if text in allowed:
            return text
        raise InvalidValue(f"expected one of {', '.join(allowed)}")

    return parse


def parse_text(raw: str, _cwd: Path) -> str:
    """Any text, kept as written."""
    return raw


def parse_optional_text(raw: str, _cwd: Path) -> str | None:
    """Any text; empty means "not set"."""
    return raw if raw.strip() else None


def parse_optional_path(raw: str, cwd: Path) -> Path | None:
    """A file or directory path, relative ones taken from the server's working directory and made
    absolute (TorchServe canonicalises them); empty means "not set"."""
    text = raw.strip()
    if not text:
        return None
    if "\x00" in text:
        raise InvalidValue("expected a path (NUL bytes are not allowed)")
    return (cwd / Path(text).expanduser()).resolve()


def parse_regex(raw: str, _cwd: Path) -> str:
    """One regular expression, checked to compile (used with full-match semantics)."""
    _compile(raw)
    return raw


def parse_regex_list(raw: str, _cwd: Path) -> tuple[str, ...]:
    """Comma-separated regular expressions (TorchServe splits ``allowed_urls`` on ","), each
    checked to compile; empty entries are dropped, so an empty value allows no URL at all."""
    patterns = tuple(part.strip() for part in raw.split(",") if part.strip())
    for pattern in patterns:
        _compile(pattern)
    return patterns


def _compile(pattern: str) -> None:
    try:
        re.compile(pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        raise InvalidValue(f"expected a valid regular expression ({exc})") from None


def parse_json_object(raw: str, _cwd: Path) -> str | None:
    """A JSON object kept as text (``model_snapshot``, read by the snapshot code); checked here."""
    if not raw.strip():
        return None
    _load_json_object(raw)
    return raw


def _load_json_object(raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise InvalidValue(f"expected a JSON object ({_json_problem(exc)})") from None
    if not isinstance(value, dict):
        raise InvalidValue(f"expected a JSON object, got {type(value).__name__}")
    return value


def _json_problem(exc: Exception) -> str:
    return str(exc) if isinstance(exc, json.JSONDecodeError) else "nested too deeply"


def parse_load_models(raw: str, _cwd: Path) -> tuple[str, ...]:
    """``load_models``: ``all``, ``standalone`` (= none) or a list of ``file.mar`` / ``name=file.mar``.

    TorchServe splits the list on commas (``--models a b`` reaches it joined with commas); Ember
    also splits on whitespace, since a space-separated list is what ``--models`` takes.

    >>> parse_load_models("noop=noop.mar, mlp.mar", Path("."))
    ('noop=noop.mar', 'mlp.mar')
    >>> parse_load_models("ALL", Path(".")), parse_load_models("standalone", Path("."))
    (('all',), ())
    """
    entries = tuple(entry for entry in re.split(r"[,\s]+", raw) if entry)
    if len(entries) == 1 and entries[0].lower() in ("all", "standalone"):
        return ("all",) if entries[0].lower() == "all" else ()
    for entry in entries:
        name, sep, url = entry.partition("=")
        if sep and (not name or not url):
            raise InvalidValue(f"entry {entry!r}: expected FILE.mar or NAME=FILE.mar")
    return entries


# -- per-model settings (the `models=` JSON) ------------------------------------------------------------


@dataclass(frozen=True)
class ModelSettings:
    """One ``models=`` entry of ``config.properties`` for one model name and version.

    ``None`` = not given. Keys and meanings are TorchServe's ``ModelConfig`` ones in camelCase in the
    JSON (``minWorkers`` → ``min_workers``), plus ``defaultVersion``, ``marName`` and
    ``runtimeType``. As in TorchServe's ``getJsonIntValue``, a value of 0 counts as not given.
    """

    min_workers: int | None = None
    max_workers: int | None = None
    batch_size: int | None = None
    max_batch_delay: int | None = None
    response_timeout: int | None = None
    startup_timeout: int | None = None
    device_type: str | None = None
    device_ids: tuple[int, ...] | None = None
    job_queue_size: int | None = None
    parallel_type: str | None = None
    parallel_level: int | None = None
    default_version: bool | None = None
    mar_name: str | None = None
    runtime_type: str | None = None
    max_retry_timeout_in_sec: int | None = None
    client_timeout_in_mills: int | None = None
    use_job_ticket: bool | None = None
    sequence_max_idle_msec: int | None = None
    sequence_timeout_msec: int | None = None
    max_sequence_job_queue_size: int | None = None
    max_num_sequence: int | None = None
    continuous_batching: bool | None = None
    sequence_batching: bool | None = None
    async_communication: bool | None = None
    use_venv: bool | None = None
    torchrun: Mapping[str, Any] | None = None


_MODEL_INT_KEYS = {
    "minWorkers": "min_workers",
    "maxWorkers": "max_workers",
    "batchSize": "batch_size",
    "maxBatchDelay": "max_batch_delay",
    "responseTimeout": "response_timeout",
    "startupTimeout": "startup_timeout",
    "jobQueueSize": "job_queue_size",
    "parallelLevel": "parallel_level",
    "maxRetryTimeoutInSec": "max_retry_timeout_in_sec",
    "clientTimeoutInMills": "client_timeout_in_mills",
    "sequenceMaxIdleMSec": "sequence_max_idle_msec",
    "sequenceTimeoutMSec": "sequence_timeout_msec",
    "maxSequenceJobQueueSize": "max_sequence_job_queue_size",
    "maxNumSequence": "max_num_sequence",
}
_MODEL_BOOL_KEYS = {
    "defaultVersion": "default_version",
    "useJobTicket": "use_job_ticket",
    "continuousBatching": "continuous_batching",
    "sequenceBatching": "sequence_batching",
    "asyncCommunication": "async_communication",
    "useVenv": "use_venv",
}
_MODEL_CHOICE_KEYS = {
    "deviceType": ("device_type", ("cpu", "gpu")),
    "parallelType": ("parallel_type", ("pp", "tp", "pptp", "custom")),
}
_MODEL_TEXT_KEYS = {"marName": "mar_name", "runtimeType": "runtime_type"}
MODEL_KEYS = (
    *_MODEL_INT_KEYS,
    *_MODEL_BOOL_KEYS,
    *_MODEL_CHOICE_KEYS,
    *_MODEL_TEXT_KEYS,
    "deviceIds",
    "torchrun",
)


def parse_models_json(
    raw: str, warn: Callable[[str], None] = lambda _message: None
) -> Mapping[str, Mapping[str, ModelSettings]]:
    """Parse the ``models=`` JSON: ``{name: {version: {camelCaseKey: value}}}``.

    Values must have the JSON type TorchServe's ``ModelConfig`` expects; wrong types and negative
    numbers raise :class:`InvalidValue` naming the model, version and key. Unknown keys and zeros
    (which TorchServe ignores) are reported through ``warn``.

    >>> cfg = parse_models_json('{"noop": {"1.0": {"minWorkers": 1, "marName": "noop.mar"}}}')
    >>> cfg["noop"]["1.0"].min_workers, cfg["noop"]["1.0"].mar_name
    (1, 'noop.mar')
    """
    top = _load_json_object(raw)
    models: dict[str, Mapping[str, ModelSettings]] = {}
    for name, versions in top.items():
        if not name or not isinstance(versions, dict):
            raise InvalidValue(f'model {name!r}: expected {{"<version>": {{<settings>}}}}')
        parsed: dict[str, ModelSettings] = {}
        for version, settings in versions.items():
            if not version or not isinstance(settings, dict):
                raise InvalidValue(f"model {name!r} version {version!r}: expected an object of settings")
            parsed[version] = _model_settings(settings, f"model {name!r} version {version!r}", warn)
        models[name] = MappingProxyType(parsed)
    return MappingProxyType(models)


def _model_settings(settings: dict[str, Any], where: str, warn: Callable[[str], None]) -> ModelSettings:
    values: dict[str, Any] = {}
    for key, value in settings.items():
        if key in _MODEL_INT_KEYS:
            number = _model_int(value, f"{where}: {key}")
            if number == 0:
                warn(f"{where}: {key}=0 is ignored, as TorchServe does; the default applies")
            else:
                values[_MODEL_INT_KEYS[key]] = number
        elif key in _MODEL_BOOL_KEYS:
            if not isinstance(value, bool):
                raise InvalidValue(f"{where}: {key} must be true or false, got {_short(value)}")
            values[_MODEL_BOOL_KEYS[key]] = value
        elif key in _MODEL_CHOICE_KEYS:
            attr, allowed = _MODEL_CHOICE_KEYS[key]
            if not isinstance(value, str) or value.lower() not in allowed:
                raise InvalidValue(f"{where}: {key} must be one of {', '.join(allowed)}, got {_short(value)}")
            values[attr] = value.lower()
        elif key in _MODEL_TEXT_KEYS:
            if not isinstance(value, str) or not value:
                raise InvalidValue(f"{where}: {key} must be a non-empty string, got {_short(value)}")
            values[_MODEL_TEXT_KEYS[key]] = value
        elif key == "deviceIds":
            values["device_ids"] = _device_ids(value, where)
        elif key == "torchrun":
            if not isinstance(value, dict):
                raise InvalidValue(f"{where}: torchrun must be an object, got {_short(value)}")
            values["torchrun"] = MappingProxyType(value)
        else:
            warn(f"{where}: unknown setting {key!r} ignored{_suggestion(key, MODEL_KEYS)}")
    mar_name = values.get("mar_name")
    if mar_name is not None:
        _check_mar_name(mar_name, where)
    result = ModelSettings(**values)
    if (
        result.min_workers is not None
        and result.max_workers is not None
        and result.max_workers < result.min_workers
    ):
        raise InvalidValue(
            f"{where}: maxWorkers ({result.max_workers}) is less than minWorkers ({result.min_workers})"
        )
    return result


def _model_int(value: object, where: str) -> int:
    # JSON true/false are not numbers here, even though Python's bool is an int.
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= INT32_MAX:
        raise InvalidValue(f"{where} must be a whole number from 0 to {INT32_MAX}, got {_short(value)}")
    return value


def _device_ids(value: object, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= INT32_MAX for v in value
    ):
        raise InvalidValue(f"{where}: deviceIds must be a list of GPU numbers, got {_short(value)}")
    return tuple(value)


def _check_mar_name(mar_name: str, where: str) -> None:
    # marName names a file in the model store: never a path out of it (SECURITY.md P9).
    parts = PurePosixPath(mar_name.replace("\\", "/")).parts
    if mar_name.startswith(("/", "\\")) or ".." in parts or "\x00" in mar_name:
        raise InvalidValue(
            f"{where}: marName must name a file inside the model store, got {_short(mar_name)}"
        )


def _short(value: object) -> str:
    text = json.dumps(value) if not isinstance(value, Mapping) else "an object"
    return text if len(text) <= 60 else text[:57] + "..."


def _suggestion(key: str, known: tuple[str, ...] | list[str]) -> str:
    import difflib  # noqa: PLC0415 - only needed on the rare unknown key

    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.75)
    if not close:
        lowered = {k.lower(): k for k in known}
        close = [lowered[m] for m in difflib.get_close_matches(key.lower(), list(lowered), n=1, cutoff=0.75)]
    return f" (did you mean {close[0]!r}?)" if close else ""


def closest_key_hint(key: str) -> str:
    """`` (did you mean 'x'?)`` for the known key closest to ``key``, or ``""``."""
    return _suggestion(key, [*KEYS, *IGNORED_KEYS])


# -- the key table --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeySpec:
    """One ``config.properties`` key: how its text is parsed, and its ``TS_*`` variable (if any)."""

    name: str
    parse: Parser
    env: str | None = None
    ember_only: bool = False
    secret: bool = False


def _ts(name: str, parse: Parser, *, env: str | None = "", secret: bool = False) -> KeySpec:
    # env="" = the usual TS_<NAME>; None = TorchServe has no environment variable for the key.
    return KeySpec(name, parse, f"TS_{name.upper()}" if env == "" else env, secret=secret)


def _ember(name: str, parse: Parser) -> KeySpec:
    return KeySpec(name, parse, f"TS_{name.upper()}", ember_only=True)


def _address(role: str) -> Parser:
    def parse(raw: str, _cwd: Path) -> ListenAddress:
        return parse_listen_address(raw, role=role)

    return parse


def _models(raw: str, _cwd: Path) -> str:
    # Parsed for real by the loader (it needs a logger for warnings); checked here for syntax.
    _load_json_object(raw)
    return raw


def _envelope(raw: str, cwd: Path) -> str | None:
    # TorchServe imports ts.torch_handler.request_envelope.<name>: only these names exist.
    return _ENVELOPES(raw, cwd) if raw.strip() else None


_ENVELOPES = choice_parser("body", "json", "kserve", "kservev2")
_PORT = int_parser(0, 65535)
_COUNT = int_parser(1)
_TIMEOUT = int_parser(1)

_SPECS = (
    # listeners
    _ts("inference_address", _address("inference")),
    _ts("management_address", _address("management")),
    _ts("metrics_address", _address("metrics")),
    _ts("grpc_inference_address", parse_host),
    _ts("grpc_management_address", parse_host),
    _ts("grpc_inference_port", _PORT),
    _ts("grpc_management_port", _PORT),
    _ts("grpc_inference_max_connection_age_ms", int_parser(0, INT64_MAX)),
    _ts("grpc_management_max_connection_age_ms", int_parser(0, INT64_MAX)),
    _ts("grpc_inference_max_connection_age_grace_ms", int_parser(0, INT64_MAX)),
    _ts("grpc_management_max_connection_age_grace_ms", int_parser(0, INT64_MAX)),
    _ts("enable_grpc_ssl", parse_bool),
    _ts("certificate_file", parse_optional_path),
    _ts("private_key_file", parse_optional_path),
    _ts("keystore", parse_optional_path),
    _ts("keystore_pass", parse_optional_text, secret=True),
    _ts("keystore_type", parse_text),
    _ts("cors_allowed_origin", parse_optional_text),
    _ts("cors_allowed_methods", parse_optional_text),
    _ts("cors_allowed_headers", parse_optional_text),
    # models and workers
    _ts("model_store", parse_optional_path),
    _ts("load_models", parse_load_models),
    _ts("workflow_store", parse_optional_path),
    _ts("models", _models, env=None),
    _ts("model_snapshot", parse_json_object, env=None),
    _ts("default_workers_per_model", int_parser(0)),
    _ts("number_of_gpu", int_parser(0)),
    _ts("job_queue_size", _COUNT),
    _ts("default_response_timeout", _TIMEOUT),
    _ts("default_startup_timeout", _TIMEOUT),
    _ts("unregister_model_timeout", int_parser(0)),
    _ts("decode_input_request", parse_bool),
    _ts("max_request_size", _COUNT),
    _ts("max_response_size", _COUNT),
    _ts("limit_max_image_pixels", parse_bool),
    _ts("service_envelope", _envelope),
    _ts("default_service_handler", parse_optional_text),
    _ts("initial_worker_port", int_parser(1, 65535)),
    _ts("initial_distribution_port", int_parser(1, 65535)),
    _ts("install_py_dep_per_model", parse_bool),
    _ts("allowed_urls", parse_regex_list),
    _ts("use_env_allowed_urls", parse_bool, env=None),
    _ts("blacklist_env_vars", parse_regex),
    _ts("ipex_enable", parse_bool),
    _ts("ipex_gpu_enable", parse_bool),
    _ts("debug", parse_bool),
    _ts("ts_header_key_sequence_id", parse_text),
    _ts("ts_header_key_sequence_start", parse_text),
    _ts("ts_header_key_sequence_end", parse_text),
    # security
    _ts("disable_token_authorization", parse_bool),
    _ts("enable_model_api", parse_bool),
    _ts("token_expiration_min", _COUNT, env="TS_TOKEN_EXPIRATION_TIME_MIN"),
    _ts("ts_open_inference_protocol", parse_bool),
    # metrics
    _ts("enable_metrics_api", parse_bool),
    _ts("metrics_mode", choice_parser("log", "prometheus")),
    _ts("metrics_config", parse_optional_path),
    _ts("metric_time_interval", _COUNT, env=None),
    _ts("disable_system_metrics", parse_bool),
    _ts("system_metrics_cmd", parse_text, env=None),
    _ts("model_metrics_auto_detect", parse_bool),
    # configuration itself
    _ts("enable_envvars_config", parse_bool, env=None),
    # Ember-only keys
    _ember("drain_timeout", int_parser(0)),
    _ember("token_auth_exempt_health", parse_bool),
    _ember("token_keys_file", parse_optional_path),
    _ember("model_download_timeout", int_parser(1)),
    _ember("metrics_clean_family", parse_bool),
    _ember("log_format", choice_parser("text", "json")),
    _ts("async_logging", parse_bool),
    _ember("batching_mode", choice_parser("adaptive", "strict")),
    _ember("batch_size", _COUNT),
    _ember("max_batch_delay", int_parser(0)),
    _ember("max_workers_per_model", _COUNT),
    _ember("max_archive_entries", _COUNT),
    _ember("max_archive_bytes", int_parser(1, INT64_MAX)),
    _ember("max_manifest_bytes", _COUNT),
    _ember("max_model_config_bytes", _COUNT),
    _ember("restart_backoff_base_ms", int_parser(0)),
    _ember("max_restart_backoff_s", float_parser(0.0)),
    _ember("max_worker_memory_mb", int_parser(0)),
)

#: Every key Ember reads, by name.
KEYS: Mapping[str, KeySpec] = MappingProxyType({spec.name: spec for spec in _SPECS})

#: Keys accepted for compatibility that change nothing in Ember, with the reason logged once.
IGNORED_KEYS: Mapping[str, str] = MappingProxyType(
    {
        "vmargs": "JVM options; Ember has no JVM",
        "number_of_netty_threads": "Netty tuning; Ember's event loop is not Netty",
        "netty_client_threads": "Netty tuning; Ember's event loop is not Netty",
        "prefer_direct_buffer": "Netty direct buffers; Ember has no JVM",
        "use_native_io": "Netty native transport; Ember has no JVM",
        "io_ratio": "Netty I/O ratio; Ember has no JVM",
        "plugins_path": "Java plugin jars cannot be loaded by Ember",
        "cpp_log_config": "the C++ backend is not supported",
        "model_server_home": "TorchServe's install directory; Ember does not need it",
        "cpu_launcher_enable": "Intel CPU launcher is not supported",
        "cpu_launcher_args": "Intel CPU launcher is not supported",
        "metrics_format": "superseded by metrics_mode",  # only when metrics_mode is also set
        "version": "set by TorchServe itself",
        "tsConfigFile": "set by TorchServe itself",
        "python": "set by TorchServe itself from --python",
    }
)
