"""Ember's one configuration object, read exactly as TorchServe 0.12 reads its configuration.

:func:`load_config` reads ``config.properties`` (with the ``javaproperties`` library: ``\\``
continuations, ``=``/``:``/space separators, escapes, comments), the ``TS_*`` environment and the
CLI flags, and returns a frozen :class:`ServerConfig`. No other module reads the environment:
everything reaches the server through this object. Key parsing lives in :mod:`emberserve.config_keys`.

Which file is read (first match wins; pytorch/serve ``ts/model_server.py`` and ``ConfigManager``
read ``TS_CONFIG_FILE`` first and only fall back to ``--ts-config`` when it is unset):

==== =========================================== ===========================================
 #    source                                       when the named file does not exist
==== =========================================== ===========================================
 1    ``TS_CONFIG_FILE`` environment variable      ConfigError (TorchServe exits: "not found")
 2    ``--ts-config FILE``                         ConfigError
 3    the newest valid snapshot in                 skipped (also with ``--ncs``); an invalid
      ``<LOG_LOCATION or ./logs>/config/``         newer one is skipped with a warning
 4    ``config.properties`` in the working dir     skipped
 5    built-in defaults                            —
==== =========================================== ===========================================

A file with a ``model_snapshot`` key (a snapshot, found by row 3 or named by rows 1–2) restores its
models; ``load_models`` and ``--models`` are then ignored, as in TorchServe (see
:mod:`emberserve.snapshot`).

Where each value comes from (later rows override earlier ones, as in ``ConfigManager``'s
constructor, which applies the CLI *before* the environment — TorchServe's docs say the same:
"the value of an environment variable overrides both command line arguments and a property in
the configuration file"):

======================================= ======================================================
 layer                                   keys
======================================= ======================================================
 built-in default                        every key (TorchServe's defaults, table in
                                         :class:`ServerConfig`)
 config file                             every key; ``$$NAME$$`` in a value is replaced by
                                         the environment variable ``NAME`` (TorchServe's
                                         ``resolveEnvVarVals``; unset → ConfigError)
 CLI flags                               ``--model-store`` → model_store, ``--models`` →
                                         load_models, ``--workflow-store`` → workflow_store,
                                         ``--disable-token-auth`` → disable_token_authorization,
                                         ``--enable-model-api`` → enable_model_api (flags only
                                         ever set ``true``), ``--ncs`` → snapshots_enabled,
                                         ``--log-config`` → log_config
 ``TS_<KEY>`` environment                only when the *file* says ``enable_envvars_config=true``;
                                         ``TS_ALLOWED_URLS`` additionally needs
                                         ``use_env_allowed_urls=true`` (SECURITY.md P12). Keys
                                         without a variable: models, model_snapshot,
                                         metric_time_interval, system_metrics_cmd,
                                         enable_envvars_config, use_env_allowed_urls.
                                         ``token_expiration_min`` is
                                         ``TS_TOKEN_EXPIRATION_TIME_MIN`` (TorchServe's name).
 always-read environment                 ``LOG_LOCATION``, ``METRICS_LOCATION`` (default
                                         ``./logs``); ``TS_OPEN_INFERENCE_PROTOCOL`` (non-empty:
                                         ``oip`` turns the Open Inference Protocol on, anything
                                         else off, whatever the file says)
======================================= ======================================================

Derived values: ``workflow_store`` defaults to ``model_store``; ``number_of_gpu`` is
``min(visible NVIDIA GPUs, number_of_gpu)``; ``default_workers_per_model`` unset or 0 means the
number of GPUs, else the number of usable CPUs (``debug=true`` forces 1), as
``ConfigManager.getDefaultWorkers``.

Ember-only keys (TorchServe has none of these; each may also come from ``TS_<KEY>``):

========================== ================ ==================================================
 key                        default          meaning
========================== ================ ==================================================
 drain_timeout              30               seconds to finish in-flight requests on shutdown
 token_auth_exempt_health   false            ``/ping``, ``/v2/health/live`` and
                                             ``/v2/health/ready`` need no token (for probes
                                             that cannot send one, e.g. Kubernetes httpGet)
 token_keys_file            (none)           keys in key_file.json's layout, provided by the
                                             operator (a Secret) so that replicas share them;
                                             never written, never expire, rotated by the
                                             operator (``GET /token`` refuses)
 model_download_timeout     600              seconds one http(s)/s3 archive download may take
 metrics_clean_family       true             with metrics_mode=prometheus, also Ember's
                                             Prometheus-style family (ember_*)
 log_format                 text             ``json``: one JSON object per log line
 batching_mode              adaptive         ``adaptive``: send a batch as soon as a worker is
                                             idle; ``strict``: wait ``max_batch_delay`` for a
                                             full batch, as TorchServe does
 batch_size                 1                batch size when nothing else sets one (TorchServe's
                                             register default)
 max_batch_delay            100              ms, same (TorchServe's register default)
 max_workers_per_model      64               scale requests above this are refused
 max_archive_entries        10000            archive extraction caps (SECURITY.md A6, A8, A10)
 max_archive_bytes          4 GiB            uncompressed bytes
 max_manifest_bytes         1 MiB
 max_model_config_bytes     1 MiB
 restart_backoff_base_ms    1000             unit of TorchServe's Fibonacci restart schedule
 max_restart_backoff_s      60               cap on one restart delay
 max_worker_memory_mb       0 (off)          a worker whose resident memory exceeds this after
                                             a batch is replaced before its next one
========================== ================ ==================================================

Stricter than TorchServe on purpose: invalid values (``job_queue_size=abc``, ``yes`` for a
boolean, a negative size, an unknown ``metrics_mode``, a regex that does not compile, a bad
address) stop the server with a :class:`~emberserve.errors.ConfigError` naming key, value,
source and what is allowed, where TorchServe would crash later, fall back silently or read
"yes" as false. Unknown keys are warned about (with the closest known key); JVM/Netty keys are
accepted and logged as ignored. Files are decoded as UTF-8 when valid, else as Latin-1 (Java's
``Properties.load`` always uses Latin-1, which garbles non-ASCII UTF-8 paths).

Example::

    >>> from pathlib import Path
    >>> cfg = load_config(CliOptions(), {}, Path("/nonexistent"), cpu_count=4, gpu_count=0)
    >>> cfg.inference_address.url, cfg.default_workers_per_model, cfg.job_queue_size
    ('http://127.0.0.1:8080', 4, 100)
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import javaproperties

from emberserve.archive.extract import ArchiveLimits
from emberserve.config_keys import (
    IGNORED_KEYS,
    KEYS,
    InvalidValue,
    KeySpec,
    ListenAddress,
    ModelSettings,
    Parser,
    closest_key_hint,
    parse_bool,
    parse_listen_address,
    parse_models_json,
)
from emberserve.errors import ConfigError
from emberserve.snapshot import latest_valid_snapshot
from emberserve.workers.env import build_worker_env

__all__ = [
    "CliOptions",
    "ListenAddress",
    "ModelSettings",
    "ServerConfig",
    "detect_cpu_count",
    "detect_gpu_count",
    "load_config",
    "parse_listen_address",
]

log = logging.getLogger("emberserve.config")

#: A config file larger than this is refused (real ones are a few KB).
MAX_CONFIG_FILE_BYTES = 16 << 20
DEFAULT_ALLOWED_URLS = ("file://.*|http(s)?://.*",)
_MASK = "****"
# TorchServe's resolveEnvVarVals pattern: $$NAME$$ with a name of two or more characters.
_ENV_REFERENCE = re.compile(r"\$\$([^$]+[^$])\$\$")


def detect_cpu_count() -> int:
    """CPUs this process may run on (like the JVM's ``availableProcessors``, honours affinity)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def detect_gpu_count(environ: Mapping[str, str], dev_dir: Path = Path("/dev")) -> int:
    """NVIDIA GPUs visible to workers: ``/dev/nvidiaN`` devices, filtered by ``CUDA_VISIBLE_DEVICES``.

    TorchServe asks ``nvidia-smi``; counting device nodes gives the same number without starting a
    process at every startup.
    """
    try:
        present = {int(m[1]) for name in os.listdir(dev_dir) if (m := re.fullmatch(r"nvidia([0-9]+)", name))}
    except OSError:
        return 0
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return len(present)
    count = 0
    for entry in visible.split(","):
        token = entry.strip()
        # CUDA stops at the first entry that is not a valid device.
        if not token.isdigit() or int(token) not in present:
            break
        count += 1
    return count


@dataclass(frozen=True)
class CliOptions:
    """What the CLI passes in; ``None`` / ``False`` = flag not given."""

    ts_config: str | None = None
    model_store: str | None = None
    models: tuple[str, ...] | None = (
        None  # --models values, e.g. ("all",) or ("digits=digits.mar", "echo.mar")
    )
    workflow_store: str | None = None
    log_config: str | None = None
    no_config_snapshots: bool = False
    disable_token_auth: bool = False
    enable_model_api: bool = False


# TorchServe's default listeners: loopback only (SECURITY.md Z12).
DEFAULT_INFERENCE_ADDRESS = ListenAddress("http", "127.0.0.1", 8080, "")
DEFAULT_MANAGEMENT_ADDRESS = ListenAddress("http", "127.0.0.1", 8081, "")
DEFAULT_METRICS_ADDRESS = ListenAddress("http", "127.0.0.1", 8082, "")


def _empty_models() -> Mapping[str, Mapping[str, ModelSettings]]:
    return MappingProxyType({})


@dataclass(frozen=True)
class ServerConfig:
    """Every setting of one server, typed; attribute = ``config.properties`` key, default = TorchServe's.

    Construct it through :func:`load_config`; ``ServerConfig(job_queue_size=2, …)`` also works and
    gives defaults for the rest (handy in tests). ``sources`` says where each value came from.
    """

    # -- listeners --
    inference_address: ListenAddress = DEFAULT_INFERENCE_ADDRESS
    management_address: ListenAddress = DEFAULT_MANAGEMENT_ADDRESS
    metrics_address: ListenAddress = DEFAULT_METRICS_ADDRESS
    grpc_inference_address: str = "127.0.0.1"
    grpc_inference_port: int = 7070
    grpc_management_address: str = "127.0.0.1"
    grpc_management_port: int = 7071
    #: gRPC max connection age / grace in ms; ``None`` = infinite.
    grpc_inference_max_connection_age_ms: int | None = None
    grpc_management_max_connection_age_ms: int | None = None
    grpc_inference_max_connection_age_grace_ms: int | None = None
    grpc_management_max_connection_age_grace_ms: int | None = None
    enable_grpc_ssl: bool = False
    certificate_file: Path | None = None
    private_key_file: Path | None = None
    keystore: Path | None = None
    keystore_pass: str | None = field(default=None, repr=False)
    keystore_type: str = "PKCS12"
    cors_allowed_origin: str | None = None
    cors_allowed_methods: str | None = None
    cors_allowed_headers: str | None = None
    # -- models and workers --
    model_store: Path | None = None
    #: ``("all",)``, ``()`` (none / "standalone") or entries ``"file.mar"`` / ``"name=file.mar"``.
    load_models: tuple[str, ...] = ()
    workflow_store: Path | None = None
    models: Mapping[str, Mapping[str, ModelSettings]] = field(default_factory=_empty_models)
    #: The ``model_snapshot`` JSON text (validated to be an object), restored by the snapshot code.
    model_snapshot: str | None = None
    default_workers_per_model: int = field(default_factory=detect_cpu_count)
    #: ``default_workers_per_model`` as configured (0 = not set), TorchServe's
    #: ``getConfiguredDefaultWorkersPerModel``: what a register request without workers gets.
    configured_default_workers_per_model: int = 0
    number_of_gpu: int = 0
    job_queue_size: int = 100
    default_response_timeout: int = 120
    default_startup_timeout: int = 120
    unregister_model_timeout: int = 120
    decode_input_request: bool = True
    max_request_size: int = 6553500
    max_response_size: int = 6553500
    limit_max_image_pixels: bool = True
    service_envelope: str | None = None
    default_service_handler: str | None = None
    initial_worker_port: int = 9000
    initial_distribution_port: int = 29500
    install_py_dep_per_model: bool = False
    #: Regexes a model URL must fully match (one entry per comma-separated part; empty = none allowed).
    allowed_urls: tuple[str, ...] = DEFAULT_ALLOWED_URLS
    use_env_allowed_urls: bool = False
    #: Regex; environment variables whose *name* fully matches are hidden from workers.
    blacklist_env_vars: str = ""
    ipex_enable: bool = False
    ipex_gpu_enable: bool = False
    debug: bool = False
    ts_header_key_sequence_id: str = "ts_request_sequence_id"
    ts_header_key_sequence_start: str = "ts_request_sequence_start"
    ts_header_key_sequence_end: str = "ts_request_sequence_end"
    # -- security --
    disable_token_authorization: bool = False
    enable_model_api: bool = False
    token_expiration_min: int = 60
    ts_open_inference_protocol: bool = False
    # -- metrics --
    enable_metrics_api: bool = True
    metrics_mode: Literal["log", "prometheus"] = "log"
    metrics_config: Path | None = None
    metric_time_interval: int = 60
    disable_system_metrics: bool = False
    system_metrics_cmd: str = ""
    model_metrics_auto_detect: bool = False
    enable_envvars_config: bool = False
    # -- accepted for compatibility, no effect in Ember (raw text as written) --
    vmargs: str | None = None
    number_of_netty_threads: str | None = None
    netty_client_threads: str | None = None
    prefer_direct_buffer: str | None = None
    use_native_io: str | None = None
    io_ratio: str | None = None
    plugins_path: str | None = None
    cpp_log_config: str | None = None
    model_server_home: str | None = None
    cpu_launcher_enable: str | None = None
    cpu_launcher_args: str | None = None
    # -- Ember-only --
    drain_timeout: int = 30
    #: Answer /ping and /v2/health/{live,ready} without a token (kubelet probes cannot send one).
    token_auth_exempt_health: bool = False
    #: Keys provided by the operator (key_file.json layout), shared by every replica.
    token_keys_file: Path | None = None
    model_download_timeout: int = 600
    metrics_clean_family: bool = True
    #: log4j-style text lines (TorchServe's) or one JSON object per line.
    log_format: Literal["text", "json"] = "text"
    #: Write log files from a background thread (TorchServe's log4j AsyncAppender switch).
    async_logging: bool = False
    batching_mode: Literal["adaptive", "strict"] = "adaptive"
    batch_size: int = 1
    max_batch_delay: int = 100
    max_workers_per_model: int = 64
    max_archive_entries: int = 10_000
    max_archive_bytes: int = 4 << 30
    max_manifest_bytes: int = 1 << 20
    max_model_config_bytes: int = 1 << 20
    restart_backoff_base_ms: int = 1000
    max_restart_backoff_s: float = 60.0
    max_worker_memory_mb: int = 0
    log_location: Path = Path("logs")
    metrics_location: Path = Path("logs")
    # -- how this configuration was made --
    log_config: Path | None = None
    snapshots_enabled: bool = True
    source_file: Path | None = None
    #: The config file's values as written there (``$$VAR$$`` unresolved): what snapshots record.
    file_properties: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType({}), repr=False, compare=False
    )
    sources: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    #: The environment the server was started with (``None`` = this process's); workers inherit it.
    environ: Mapping[str, str] | None = field(default=None, repr=False, compare=False)

    @property
    def snapshot_dir(self) -> Path:
        """Where config snapshots live: ``<log_location>/config``, as TorchServe's FSSnapshotSerializer."""
        return self.log_location / "config"

    def model_settings(self, name: str, version: str | None) -> ModelSettings | None:
        """The ``models=`` entry for ``name`` and ``version``.

        With ``version=None``: the entry marked ``defaultVersion`` (the last one if several are),
        else the only entry if there is exactly one, else ``None``.
        """
        versions = self.models.get(name)
        if not versions:
            return None
        if version is not None:
            return versions.get(version)
        defaults = [settings for settings in versions.values() if settings.default_version]
        if defaults:
            return defaults[-1]
        return next(iter(versions.values())) if len(versions) == 1 else None

    def non_default_settings(self) -> list[tuple[str, str, str]]:
        """``(key, printable value, source)`` for every setting not left at its default, in
        declaration order; secrets print as ``****``. The server logs these at startup."""
        rows: list[tuple[str, str, str]] = []
        for f in dataclasses.fields(self):
            source = self.sources.get(f.name, "default")
            if source == "default":
                continue
            value = getattr(self, f.name)
            if f.name == "model_snapshot":
                continue  # a long JSON document; the server logs the restore instead
            rows.append((f.name, _MASK if _is_secret(f.name) and value else _printable(value), source))
        return rows

    def archive_limits(self) -> ArchiveLimits:
        """The extraction caps for model archives."""
        return ArchiveLimits(
            max_entries=self.max_archive_entries,
            max_total_bytes=self.max_archive_bytes,
            max_manifest_bytes=self.max_manifest_bytes,
            max_model_config_bytes=self.max_model_config_bytes,
        )

    def worker_environment(self) -> dict[str, str]:
        """The environment for a worker process: the server's, minus ``blacklist_env_vars`` matches
        and secrets, plus TorchServe's backend settings (``getBackendConfiguration``)."""
        base = os.environ if self.environ is None else self.environ
        return build_worker_env(
            base,
            blacklist=self.blacklist_env_vars or None,
            secret_names=("TS_KEYSTORE_PASS",),
            secret_values=[self.keystore_pass] if self.keystore_pass else [],
            decode_input_request=self.decode_input_request,
            extra={
                "TS_IPEX_ENABLE": _printable(self.ipex_enable),
                "TS_IPEX_GPU_ENABLE": _printable(self.ipex_gpu_enable),
            },
        )


_FIELDS = frozenset(f.name for f in dataclasses.fields(ServerConfig))


def _is_secret(key: str) -> bool:
    spec = KEYS.get(key)
    return spec is not None and spec.secret


def _printable(value: object) -> str:
    if value is None:
        return "N/A"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, ListenAddress):
        return value.url
    if isinstance(value, tuple):
        return ",".join(str(item) for item in value)
    if isinstance(value, Mapping):
        return ", ".join(f"{name}:{version}" for name, versions in value.items() for version in versions)
    return str(value)


# -- loading --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Raw:
    """One raw value and where it came from ("file …", "env TS_X", "cli --flag")."""

    value: str
    source: str


def load_config(
    cli: CliOptions,
    environ: Mapping[str, str],
    cwd: Path,
    *,
    cpu_count: int | None = None,
    gpu_count: int | None = None,
) -> ServerConfig:
    """Build the server's configuration from ``config.properties``, ``environ`` and ``cli``.

    ``cwd`` is where ``./config.properties`` is looked for and what relative paths are relative
    to. ``cpu_count`` / ``gpu_count`` replace hardware detection (tests). Raises
    :class:`~emberserve.errors.ConfigError` when a value is invalid or a named file is missing.
    """
    cwd = cwd.absolute()
    source_file = _locate_config_file(cli, environ, cwd)
    raw, file_properties = _read_properties(source_file, environ) if source_file else ({}, {})
    _apply_cli(raw, cli)
    if _flag(raw, "enable_envvars_config", cwd):
        _apply_environment(raw, environ, use_env_allowed_urls=_flag(raw, "use_env_allowed_urls", cwd))
    else:
        _report_unused_environment(environ)

    values, sources = _parse_all(raw, cwd)
    _apply_always_read_environment(values, sources, environ, cwd)
    _derive(values, environ, cpu_count, gpu_count)
    _check(values)
    if "allowed_urls" not in raw:
        log.warning(
            "Your Ember instance can access any URL to load models. When deploying to production, "
            "make sure to limit the set of allowed_urls in config.properties"
        )
    for pattern in values.get("allowed_urls", ()):
        if loose_host(pattern):
            log.warning(
                "allowed_urls pattern %r: an unescaped '.' in its host matches any character "
                "(models.example.com also matches modelsXexample.com); escape it as '\\.'",
                pattern,
            )
    if cli.log_config:
        values["log_config"] = _existing_file(cli.log_config, cwd, "--log-config")
        sources["log_config"] = "cli --log-config"
    if cli.no_config_snapshots:
        values["snapshots_enabled"] = False
        sources["snapshots_enabled"] = "cli --ncs"
    full_sources = {name: sources.get(name, "default") for name in _FIELDS if name not in _META_FIELDS}
    return ServerConfig(
        **values,
        source_file=source_file,
        file_properties=MappingProxyType(file_properties),
        sources=MappingProxyType(full_sources),
        environ=MappingProxyType(dict(environ)),
    )


_META_FIELDS = frozenset({"source_file", "file_properties", "sources", "environ"})

# A '.' between two host characters, not escaped: "models.example.com" in "https://models.example.com/".
_LOOSE_DOT = re.compile(r"(?<=[A-Za-z0-9])(?<!\\)\.(?=[A-Za-z0-9])")


def loose_host(pattern: str) -> bool:
    """Does the host part of an ``allowed_urls`` regex have a dot that matches any character?

    >>> loose_host("https://models.example.com/.*"), loose_host(r"https://models\\.example\\.com/.*")
    (True, False)
    >>> loose_host("file://.*|http(s)?://.*")
    False
    """
    return any(_LOOSE_DOT.search(part.split("/", 1)[0]) for part in pattern.split("://")[1:])


def _locate_config_file(cli: CliOptions, environ: Mapping[str, str], cwd: Path) -> Path | None:
    # TorchServe's launcher (ts/model_server.py) and ConfigManager both take TS_CONFIG_FILE first and
    # only look at --ts-config when it is unset; a named file that is missing stops the launcher.
    from_env = environ.get("TS_CONFIG_FILE") or None
    if from_env and cli.ts_config:
        log.warning("TS_CONFIG_FILE=%s takes precedence over --ts-config %s", from_env, cli.ts_config)
    if from_env:
        return _existing_file(from_env, cwd, "TS_CONFIG_FILE")
    if cli.ts_config:
        return _existing_file(cli.ts_config, cwd, "--ts-config")
    if not cli.no_config_snapshots:
        # TorchServe's ConfigManager: without a named file, the last snapshot is the configuration.
        logs = environ.get("LOG_LOCATION")
        snapshot = latest_valid_snapshot((cwd / logs if logs else cwd / "logs") / "config")
        if snapshot is not None:
            return snapshot.resolve()
    local = cwd / "config.properties"
    return local.resolve() if local.is_file() else None


def _existing_file(name: str, cwd: Path, what: str) -> Path:
    path = (cwd / Path(name).expanduser()).resolve()
    if not path.is_file():
        raise ConfigError(f"{what} file not found: {path}")
    return path


def _read_properties(path: Path, environ: Mapping[str, str]) -> tuple[dict[str, _Raw], dict[str, str]]:
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_CONFIG_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"Cannot read config file {path}: {exc.strerror}") from exc
    if len(data) > MAX_CONFIG_FILE_BYTES:
        raise ConfigError(f"Config file {path} is larger than {MAX_CONFIG_FILE_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    source = f"file {path}"
    raw: dict[str, _Raw] = {}
    texts: dict[str, str] = {}
    try:
        for element in javaproperties.parse(text):
            if not isinstance(element, javaproperties.KeyValue):
                continue
            if element.key in raw:
                log.warning("%s: %s is set more than once; the last value is used", path, element.key)
            texts[element.key] = element.value
            raw[element.key] = _Raw(
                _substitute_environment(element.key, element.value, environ, source), source
            )
    except javaproperties.InvalidUEscapeError as exc:
        raise ConfigError(f"Config file {path}: invalid \\u escape {exc.escape!r}") from exc
    return raw, texts


def _substitute_environment(key: str, value: str, environ: Mapping[str, str], source: str) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match[1]
        if name not in environ:
            raise ConfigError(
                f"{key} (from {source}) refers to $${name}$$, but environment variable {name} is not set"
            )
        return environ[name]

    return _ENV_REFERENCE.sub(replace, value)


def _apply_cli(raw: dict[str, _Raw], cli: CliOptions) -> None:
    if cli.model_store:
        raw["model_store"] = _Raw(cli.model_store, "cli --model-store")
    if cli.models:
        # TorchServe joins the --models values with "," into load_models.
        raw["load_models"] = _Raw(",".join(cli.models), "cli --models")
    if cli.workflow_store:
        raw["workflow_store"] = _Raw(cli.workflow_store, "cli --workflow-store")
    if cli.disable_token_auth:
        raw["disable_token_authorization"] = _Raw("true", "cli --disable-token-auth")
    if cli.enable_model_api:
        raw["enable_model_api"] = _Raw("true", "cli --enable-model-api")


def _env_keys() -> dict[str, KeySpec]:
    return {
        spec.env: spec for spec in KEYS.values() if spec.env and spec.name != "ts_open_inference_protocol"
    }


def _apply_environment(
    raw: dict[str, _Raw], environ: Mapping[str, str], *, use_env_allowed_urls: bool
) -> None:
    for name, spec in _env_keys().items():
        if name not in environ:
            continue
        if spec.name == "allowed_urls" and not use_env_allowed_urls:
            log.warning("TS_ALLOWED_URLS is ignored: it needs use_env_allowed_urls=true in config.properties")
            continue
        raw[spec.name] = _Raw(environ[name], f"env {name}")


def _report_unused_environment(environ: Mapping[str, str]) -> None:
    unused = sorted(name for name in _env_keys() if name in environ)
    if unused:
        log.info(
            "Environment variables %s are ignored: set enable_envvars_config=true in config.properties "
            "to use them",
            ", ".join(unused),
        )


def _flag(raw: Mapping[str, _Raw], key: str, cwd: Path) -> bool:
    item = raw.get(key)
    return bool(item and _parse_value(key, item, parse_bool, cwd))


def _parse_value(key: str, item: _Raw, parser: Parser, cwd: Path) -> Any:
    try:
        return parser(item.value, cwd)
    except InvalidValue as exc:
        raise ConfigError(
            f"Invalid value for {key} (from {item.source}): {_quote(item.value)}; {exc}"
        ) from None


def _quote(value: str) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def _parse_all(raw: Mapping[str, _Raw], cwd: Path) -> tuple[dict[str, Any], dict[str, str]]:
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for key, item in raw.items():
        spec = KEYS.get(key)
        if spec is not None:
            values[key] = _parse_value(key, item, spec.parse, cwd)
            sources[key] = item.source
        elif key == "metrics_format" and "metrics_mode" not in raw:
            # The pre-0.8 name of metrics_mode.
            values["metrics_mode"] = _parse_value(key, item, KEYS["metrics_mode"].parse, cwd)
            sources["metrics_mode"] = item.source
        elif key in IGNORED_KEYS:
            log.info("%s (from %s) has no effect in Ember: %s", key, item.source, IGNORED_KEYS[key])
            if key in _FIELDS:
                values[key] = item.value
                sources[key] = item.source
        else:
            log.warning("Unknown key %r (from %s) is ignored%s", key, item.source, closest_key_hint(key))
    if "models" in values:
        item = raw["models"]
        try:
            values["models"] = parse_models_json(
                values["models"], lambda message: log.warning("models: %s", message)
            )
        except InvalidValue as exc:
            raise ConfigError(f"Invalid value for models (from {item.source}): {exc}") from None
    return values, sources


def _apply_always_read_environment(
    values: dict[str, Any], sources: dict[str, str], environ: Mapping[str, str], cwd: Path
) -> None:
    for name, key in (("LOG_LOCATION", "log_location"), ("METRICS_LOCATION", "metrics_location")):
        location = environ.get(name)
        values[key] = (cwd / location).resolve() if location else cwd / "logs"
        if location:
            sources[key] = f"env {name}"
    # ConfigManager.isOpenInferenceProtocol reads this variable whether or not envvars config is on.
    protocol = environ.get("TS_OPEN_INFERENCE_PROTOCOL")
    if protocol:
        values["ts_open_inference_protocol"] = protocol == "oip"
        sources["ts_open_inference_protocol"] = "env TS_OPEN_INFERENCE_PROTOCOL"


def _derive(
    values: dict[str, Any], environ: Mapping[str, str], cpu_count: int | None, gpu_count: int | None
) -> None:
    gpus = detect_gpu_count(environ) if gpu_count is None else gpu_count
    if "number_of_gpu" in values:
        gpus = min(gpus, values["number_of_gpu"])
    values["number_of_gpu"] = gpus

    configured = values.get("default_workers_per_model", 0)
    values["configured_default_workers_per_model"] = configured
    limit = values.get("max_workers_per_model", ServerConfig.max_workers_per_model)
    if configured > limit:
        raise ConfigError(
            f"default_workers_per_model={configured} is more than max_workers_per_model={limit}; "
            "lower it or raise max_workers_per_model"
        )
    if values.get("debug"):
        workers = 1
    elif configured > 0:
        workers = configured
    else:
        workers = gpus or (detect_cpu_count() if cpu_count is None else cpu_count)
        if workers > limit:
            log.info(
                "default_workers_per_model: %d CPUs/GPUs, capped at max_workers_per_model=%d", workers, limit
            )
            workers = limit
    values["default_workers_per_model"] = workers

    if values.get("workflow_store") is None:
        values["workflow_store"] = values.get("model_store")


def _check(values: Mapping[str, Any]) -> None:
    store: Path | None = values.get("model_store")
    if store is not None and not store.is_dir():
        raise ConfigError(f"model_store directory not found: {store}")
    workflow: Path | None = values.get("workflow_store")
    if workflow is not None and not workflow.is_dir():
        raise ConfigError(f"workflow_store directory not found: {workflow}")
    limit = values.get("max_workers_per_model", ServerConfig.max_workers_per_model)
    models: Mapping[str, Mapping[str, ModelSettings]] = values.get("models", {})
    for name, versions in models.items():
        for version, settings in versions.items():
            most = max(settings.min_workers or 0, settings.max_workers or 0)
            if most > limit:
                raise ConfigError(
                    f"models: model {name!r} version {version!r} asks for {most} workers, more than "
                    f"max_workers_per_model={limit}"
                )
