"""``model-config.yaml``: a model's own settings, read without trusting its author.

The file travels inside the archive, so it is parsed as hostile input (SECURITY.md A11, A12):

* a size cap before any parsing;
* a pure-Python *safe* loader (no object construction — the YAML twin of ShellTorch's
  SnakeYAML step cannot happen) that refuses anchors and aliases (billion laughs), refuses
  every tag outside YAML's core schema (``!!python/...``, ``!!binary``, custom ``!tags``) and
  caps nesting depth;
* dates stay strings (``2024-01-01`` is not turned into a ``datetime``), so the result is
  plain data that crosses the worker protocol unchanged.

:func:`load_model_config` returns the whole mapping (handlers see it as
``context.model_yaml_config``); :class:`ModelYamlSettings` picks out the keys the frontend uses,
typed, with TorchServe's rules for which values take effect.

    >>> cfg = load_model_config(b"minWorkers: 1\\nmaxWorkers: 2\\nresponseTimeout: 60\\nhandler: {topk: 3}")
    >>> cfg["handler"]
    {'topk': 3}
    >>> s = ModelYamlSettings.from_config(cfg)
    >>> (s.min_workers, s.max_workers, s.response_timeout, s.batch_size)
    (1, 2, 60, None)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import yaml
from yaml.nodes import Node

from emberserve.errors import ArchiveError

#: Deepest nesting accepted in model-config.yaml (real configs use a handful of levels).
MAX_YAML_DEPTH = 64

_CORE = "tag:yaml.org,2002:"
# Tags that produce plain data; everything else is refused. ``merge`` is the ``<<`` key, which
# can only merge inline mappings here since aliases are refused.
_ALLOWED_TAGS = frozenset(_CORE + t for t in ("null", "bool", "int", "float", "str", "seq", "map", "merge"))
# Implicit resolvers to drop: timestamps (would yield datetime objects) and "=" (PyYAML resolves
# it to a tag its safe constructor cannot build).
_DROPPED_RESOLVERS = frozenset((_CORE + "timestamp", _CORE + "value"))

_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1


class _PlainDataLoader(yaml.SafeLoader):
    """SafeLoader that composes plain data only: no aliases, no anchors, core tags, bounded depth."""

    yaml_implicit_resolvers = {  # noqa: RUF012 - PyYAML's own class-level table, replaced per class
        first: [(tag, regexp) for tag, regexp in resolvers if tag not in _DROPPED_RESOLVERS]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def __init__(self, stream: bytes) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        event: Any = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent):
            raise ArchiveError("Invalid model-config.yaml: aliases (*name) are not allowed.")
        if getattr(event, "anchor", None) is not None:
            raise ArchiveError("Invalid model-config.yaml: anchors (&name) are not allowed.")
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise ArchiveError(f"Invalid model-config.yaml: nested deeper than {MAX_YAML_DEPTH} levels.")
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if node is not None and node.tag not in _ALLOWED_TAGS:
            raise ArchiveError(f"Invalid model-config.yaml: tag {_short(node.tag)} is not allowed.")
        return node


def load_model_config(data: bytes, max_bytes: int = 1 << 20) -> dict[str, Any]:
    """Parse model-config.yaml bytes into a dict (an empty document gives ``{}``).

    Raises :class:`ArchiveError` for files over ``max_bytes``, invalid YAML, several documents,
    aliases/anchors, non-core tags, deep nesting, or a top level that is not a mapping.
    """
    if len(data) > max_bytes:
        raise ArchiveError(f"Invalid model-config.yaml: larger than {max_bytes} bytes.")
    loader: _PlainDataLoader | None = None
    try:
        loader = _PlainDataLoader(data)  # already reads (and checks) the start of the stream
        doc = loader.get_single_data()
    except yaml.YAMLError as exc:
        raise ArchiveError(f"Failed to parse model config yaml file: {_yaml_problem(exc)}") from exc
    except (ValueError, RecursionError) as exc:
        # ValueError: e.g. an integer literal beyond Python's int/str conversion limit.
        raise ArchiveError(f"Failed to parse model config yaml file: {type(exc).__name__}") from exc
    finally:
        if loader is not None:
            loader.dispose()
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ArchiveError("Invalid model-config.yaml: the top level must be a mapping.")
    return doc


@dataclass(frozen=True)
class ModelYamlSettings:
    """The frontend-relevant keys of model-config.yaml; ``None`` = absent or not in effect.

    Types are checked strictly: a key with a wrong type (``batchSize: "8"``, ``useVenv: 1``, an
    integer beyond 32 bits) or an unknown enum value (``deviceType: tpu``) raises
    :class:`ArchiveError` — TorchServe logs a warning and ignores such keys. Values of the right
    type follow TorchServe's ``ModelConfig`` rules: ``minWorkers``, ``batchSize``,
    ``maxSequenceJobQueueSize`` and ``maxNumSequence`` are raised to at least 1; timeouts,
    ``maxBatchDelay`` and ``jobQueueSize`` only count when positive; ``minWorkers`` and
    ``maxWorkers`` only count as a pair with ``maxWorkers >= minWorkers`` (TorchServe's
    ``ApiUtils``); ``torchrun.nproc-per-node`` sets ``parallel_level``.
    """

    min_workers: int | None = None
    max_workers: int | None = None
    batch_size: int | None = None
    max_batch_delay: int | None = None
    response_timeout: int | None = None
    startup_timeout: int | None = None
    device_type: str | None = None  # "cpu" | "gpu"
    device_ids: tuple[int, ...] | None = None
    parallel_type: str | None = None  # "pp" | "tp" | "pptp" | "custom"
    parallel_level: int | None = None
    torchrun: Mapping[str, Any] | None = None
    max_retry_timeout_in_sec: int | None = None
    client_timeout_in_mills: int | None = None
    job_queue_size: int | None = None
    use_job_ticket: bool | None = None
    sequence_max_idle_msec: int | None = None
    sequence_timeout_msec: int | None = None
    max_sequence_job_queue_size: int | None = None
    max_num_sequence: int | None = None
    continuous_batching: bool | None = None
    sequence_batching: bool | None = None
    async_communication: bool | None = None
    use_venv: bool | None = None

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> ModelYamlSettings:
        """Pick the frontend settings out of a parsed model-config.yaml mapping."""
        ints = {key: _int(cfg, key) for key in _INT_KEYS}
        bools = {key: _bool(cfg, key) for key in _BOOL_KEYS}

        min_w, max_w = ints["minWorkers"], ints["maxWorkers"]
        if min_w is not None:
            min_w = max(1, min_w)
        if min_w is None or max_w is None or max_w < min_w:
            min_w = max_w = None

        raw_torchrun = cfg.get("torchrun")
        torchrun = _torchrun(raw_torchrun) if raw_torchrun is not None else None
        parallel_level = None
        # TorchServe applies parallelLevel and torchrun in file order; the later one wins.
        for key in cfg:
            if key == "parallelLevel" and ints["parallelLevel"] is not None and ints["parallelLevel"] >= 0:
                parallel_level = ints["parallelLevel"]
            elif key == "torchrun" and torchrun is not None:
                parallel_level = torchrun.get("nproc-per-node", 1)

        return cls(
            min_workers=min_w,
            max_workers=max_w,
            batch_size=_at_least(ints["batchSize"], 1),
            max_batch_delay=_positive(ints["maxBatchDelay"]),
            response_timeout=_positive(ints["responseTimeout"]),
            startup_timeout=_positive(ints["startupTimeout"]),
            device_type=_enum(cfg, "deviceType", ("cpu", "gpu")),
            device_ids=_device_ids(cfg),
            parallel_type=_enum(cfg, "parallelType", ("pp", "tp", "pptp", "custom")),
            parallel_level=parallel_level or None,
            torchrun=torchrun,
            max_retry_timeout_in_sec=_at_least(ints["maxRetryTimeoutInSec"], 0),
            client_timeout_in_mills=_at_least(ints["clientTimeoutInMills"], 0),
            job_queue_size=_positive(ints["jobQueueSize"]),
            use_job_ticket=bools["useJobTicket"],
            sequence_max_idle_msec=_at_least(ints["sequenceMaxIdleMSec"], 0),
            sequence_timeout_msec=_at_least(ints["sequenceTimeoutMSec"], 0),
            max_sequence_job_queue_size=_at_least(ints["maxSequenceJobQueueSize"], 1),
            max_num_sequence=_at_least(ints["maxNumSequence"], 1),
            continuous_batching=bools["continuousBatching"],
            sequence_batching=bools["sequenceBatching"],
            async_communication=bools["asyncCommunication"],
            use_venv=bools["useVenv"],
        )


_INT_KEYS = (
    "minWorkers",
    "maxWorkers",
    "batchSize",
    "maxBatchDelay",
    "responseTimeout",
    "startupTimeout",
    "parallelLevel",
    "maxRetryTimeoutInSec",
    "clientTimeoutInMills",
    "jobQueueSize",
    "sequenceMaxIdleMSec",
    "sequenceTimeoutMSec",
    "maxSequenceJobQueueSize",
    "maxNumSequence",
)
_BOOL_KEYS = ("useJobTicket", "continuousBatching", "sequenceBatching", "asyncCommunication", "useVenv")
_TORCHRUN_INT_KEYS = ("nnodes", "nproc-per-node", "monitor-interval", "node-rank", "OMP_NUMBER_THREADS")
_TORCHRUN_STR_KEYS = ("rdzv-backend", "rdzv-endpoint", "rdzv-conf")


def _is_int32(value: object) -> bool:
    # bool is an int subclass in Python but not an Integer in TorchServe's YAML typing.
    return isinstance(value, int) and not isinstance(value, bool) and _INT32_MIN <= value <= _INT32_MAX


def _int(cfg: Mapping[str, Any], key: str, where: str = "") -> int | None:
    value = cfg.get(key)
    if value is None:
        return None
    if not _is_int32(value):
        raise ArchiveError(
            f"Invalid model-config.yaml: {where}{key} must be a 32-bit integer, got {_short(value)}."
        )
    return int(value)


def _bool(cfg: Mapping[str, Any], key: str) -> bool | None:
    value = cfg.get(key)
    if value is None or isinstance(value, bool):
        return value
    raise ArchiveError(f"Invalid model-config.yaml: {key} must be true or false, got {_short(value)}.")


def _enum(cfg: Mapping[str, Any], key: str, allowed: tuple[str, ...]) -> str | None:
    value = cfg.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.lower() in allowed:
        return value.lower()
    raise ArchiveError(
        f"Invalid model-config.yaml: {key} must be one of {', '.join(allowed)}, got {_short(value)}."
    )


def _device_ids(cfg: Mapping[str, Any]) -> tuple[int, ...] | None:
    value = cfg.get("deviceIds")
    if value is None:
        return None
    if not isinstance(value, list) or not all(_is_int32(v) for v in value):
        raise ArchiveError(
            f"Invalid model-config.yaml: deviceIds must be a list of integers, got {_short(value)}."
        )
    return tuple(value) or None


def _torchrun(value: object) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ArchiveError(f"Invalid model-config.yaml: torchrun must be a mapping, got {_short(value)}.")
    for key in _TORCHRUN_INT_KEYS:
        _int(value, key, "torchrun.")
    for key in _TORCHRUN_STR_KEYS:
        if value.get(key) is not None and not isinstance(value[key], str):
            raise ArchiveError(f"Invalid model-config.yaml: torchrun.{key} must be a string.")
    nproc = value.get("nproc-per-node")
    result = dict(value)
    # TorchServe keeps its default of 1 process per node for a non-positive value.
    result["nproc-per-node"] = nproc if isinstance(nproc, int) and nproc > 0 else 1
    return MappingProxyType(result)


def _at_least(value: int | None, floor: int) -> int | None:
    return None if value is None else max(floor, value)


def _positive(value: int | None) -> int | None:
    return value if value is not None and value > 0 else None


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def _yaml_problem(exc: yaml.YAMLError) -> str:
    # Marked errors carry a line/column; keep the message short and free of the document itself.
    if isinstance(exc, yaml.MarkedYAMLError):
        where = (
            f" (line {exc.problem_mark.line + 1}, column {exc.problem_mark.column + 1})"
            if exc.problem_mark
            else ""
        )
        return f"{exc.problem or exc.context or 'invalid YAML'}{where}"
    return type(exc).__name__
