"""Handler metrics: ``context.metrics`` and the ``ts.metrics.*`` names TorchServe handlers use.

TorchServe's worker prints every metric update as a ``[METRICS]…`` log line that the frontend
parses back. Ember's worker instead collects each update as a
:class:`~emberserve.workers.protocol.MetricRecord` in a :class:`MetricSink`; the worker sends the
records of a batch to the frontend as one ``MetricsReport`` frame. The API (names, signatures,
defaults, validation and the ``ModelName``/``Level`` default dimensions) is TorchServe's.

Example::

    >>> cache = MetricsCacheYamlImpl(model_name="mnist", sink=MetricSink())
    >>> cache.set_request_ids({0: "req-1"})
    >>> cache.add_time("InferenceTime", 12.5, idx=0)
    >>> [(r.name, r.unit, r.metric_type, r.value, r.dimension_values, r.request_id) for r in cache.drain()]
    [('InferenceTime', 'Milliseconds', 'gauge', 12.5, ['mnist', 'Model'], 'req-1')]
"""

from __future__ import annotations

import abc
import enum
import logging
from typing import Any

from emberserve.workers.protocol import MetricRecord

logger = logging.getLogger(__name__)


class MetricTypes(enum.Enum):
    """Kinds of metric a handler can record (``ts.metrics.metric_type_enum.MetricTypes``)."""

    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"


#: Short unit names accepted by TorchServe and the names it reports them under.
UNIT_NAMES: dict[str | None, str] = {
    "ms": "Milliseconds",
    "s": "Seconds",
    "percent": "Percent",
    "count": "Count",
    "MB": "Megabytes",
    "GB": "Gigabytes",
    "kB": "Kilobytes",
    "B": "Bytes",
    "": "unit",
    None: "unit",
}


class Units:
    """``ts.metrics.unit.Units``: ``Units().units`` maps short unit names to reported names."""

    def __init__(self) -> None:
        self.units = dict(UNIT_NAMES)


class Dimension:
    """One ``name: value`` label of a metric (``ts.metrics.dimension.Dimension``)."""

    def __init__(self, name: str, value: Any) -> None:
        self.name = name
        self.value = value

    def __str__(self) -> str:
        return f"{self.name}:{self.value}"

    def __repr__(self) -> str:
        return f"Dimension({self.name!r}, {self.value!r})"

    def to_dict(self) -> dict[str, Any]:
        return {"Name": self.name, "Value": self.value}


# -- errors (``ts.metrics.metric_cache_errors``) ----------------------------------------------


class GeneralMetricsCacheError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(f"Generic error: {message}")


class MetricsCacheIOError(OSError):
    def __init__(self, message: str) -> None:
        super().__init__(f"Error reading file: {message}")


class MetricsCachePyYamlError(ValueError):
    """A metrics YAML file could not be parsed (TorchServe derives this from ``yaml.YAMLError``)."""

    def __init__(self, message: str) -> None:
        super().__init__(f"Error parsing file: {message}")


class MetricsCacheTypeError(TypeError):
    pass


class MetricsCacheValueError(ValueError):
    pass


class MetricsCacheKeyError(KeyError):
    pass


# -- records ------------------------------------------------------------------------------------


class MetricSink:
    """Where metric updates wait until the worker sends them to the frontend."""

    def __init__(self) -> None:
        self.records: list[MetricRecord] = []

    def drain(self) -> list[MetricRecord]:
        """Return the pending records and forget them."""
        records, self.records = self.records, []
        return records


#: The worker's sink: metric objects a handler builds itself (not through ``context.metrics``)
#: report here, as TorchServe's report to the worker's stdout whatever created them.
DEFAULT_SINK = MetricSink()


class MetricAbstract(abc.ABC):
    """Base of metric objects (``ts.metrics.metric_abstract.MetricAbstract``)."""

    def __init__(
        self,
        metric_name: str,
        unit: str,
        dimension_names: list[str] | None = None,
        metric_type: MetricTypes = MetricTypes.COUNTER,
    ) -> None:
        self.metric_name = metric_name
        self.unit = UNIT_NAMES.get(unit, unit)
        self.dimension_names = list(dimension_names or [])
        self.metric_type = metric_type

    @abc.abstractmethod
    def add_or_update(self, value: float, dimension_values: list[Any], request_id: str = "") -> None:
        """Record one update of this metric."""


class CachingMetric(MetricAbstract):
    """A named metric with fixed dimension names; each update becomes one record.

    >>> sink = MetricSink()
    >>> m = CachingMetric("Loss", "count", ["ModelName"], MetricTypes.GAUGE, sink=sink)
    >>> m.add_or_update(0.25, ["mnist"])
    >>> sink.drain()[0].value
    0.25
    """

    def __init__(
        self,
        metric_name: str,
        unit: str,
        dimension_names: list[str] | None = None,
        metric_type: MetricTypes = MetricTypes.COUNTER,
        *,
        sink: MetricSink | None = None,
    ) -> None:
        super().__init__(metric_name, unit, dimension_names, metric_type)
        self.sink = DEFAULT_SINK if sink is None else sink

    def add_or_update(
        self,
        value: float,
        dimension_values: list[Any] | None = None,
        request_id: str | None = "",
    ) -> None:
        """Record ``value`` for ``dimension_values`` (one per dimension name, in order).

        Invalid updates (wrong number of dimension values, negative counter increments,
        non-numeric values) are logged and dropped, as TorchServe does.
        """
        values = [] if dimension_values is None else list(dimension_values)
        try:
            if len(values) != len(self.dimension_names):
                raise ValueError(
                    f"Dimension values: {values} should correspond to Dimension names: {self.dimension_names}"
                )
            number = float(value)
            if self.metric_type is MetricTypes.COUNTER and number < 0:
                raise ValueError("Counter metric update value cannot be negative")
        except (TypeError, ValueError, OverflowError) as exc:
            logger.error(
                "[METRICS]Failed to update metric with name:%s and dimensions: %s with value: %r: %s",
                self.metric_name,
                ",".join(f"{n}:{v}" for n, v in zip(self.dimension_names, values, strict=False)),
                value,
                exc,
            )
            return
        self.sink.records.append(
            MetricRecord(
                self.metric_name,
                self.unit,
                self.metric_type.value,
                number,
                list(self.dimension_names),
                [str(v) for v in values],
                request_id or "",
            )
        )

    def update(self, value: float, request_id: str = "", dimensions: list[Dimension] | None = None) -> None:
        """Backwards-compatible update: ``dimensions`` (Dimension objects) replace the dimension names."""
        dims = list(dimensions or [])
        logger.warning("Overriding existing dimensions")
        self.dimension_names = [d.name for d in dims]
        self.add_or_update(value, [d.value for d in dims], request_id)


# -- the cache (``context.metrics``) -----------------------------------------------------------


def _check_type(variable: object, expected: type, helper_text: str) -> None:
    if not isinstance(variable, expected):
        raise MetricsCacheTypeError(helper_text)


class MetricCacheAbstract(abc.ABC):
    """``context.metrics``: metric objects by type and name, plus TorchServe's ``add_*`` shortcuts.

    ``request_ids`` is set by the worker for every batch (``{idx: request_id}``); ``idx`` arguments
    pick one request's id, otherwise a metric is attributed to the whole batch (ids joined with
    commas).
    """

    def __init__(
        self,
        config_file_path: str | None = None,
        *,
        model_name: str | None = None,
        sink: MetricSink | None = None,
    ) -> None:
        self.cache: dict[MetricTypes, dict[str, CachingMetric]] = {}
        self.store: list[Any] = []
        self.request_ids: dict[int, str] | str | None = None
        self.model_name = model_name
        self.config_file_path = config_file_path
        self.sink = DEFAULT_SINK if sink is None else sink

    # -- Ember ---------------------------------------------------------------------------------

    def drain(self) -> list[MetricRecord]:
        """The records added since the last drain (the worker sends them after each batch)."""
        return self.sink.drain()

    # -- TorchServe API --------------------------------------------------------------------------

    def set_request_ids(self, request_ids: dict[int, str] | str | None) -> None:
        self.request_ids = request_ids

    def _get_req(self, idx: int | None) -> str | None:
        ids = self.request_ids
        if isinstance(ids, dict):
            if idx is not None and idx in ids:
                return ids[idx]
            return ",".join(ids.values())
        return ids

    def _add_default_dims(self, req_id: str | None, dimensions: list[Dimension] | None) -> list[Dimension]:
        # A copy: TorchServe appends to the caller's list (even a shared default argument).
        dims = list(dimensions or [])
        names = {d.name for d in dims}
        if req_id is None:
            if "Level" not in names:
                dims.append(Dimension("Level", "Error"))
        else:
            if "ModelName" not in names:
                dims.append(Dimension("ModelName", self.model_name))
            if "Level" not in names:
                dims.append(Dimension("Level", "Model"))
        return dims

    def _record(
        self,
        name: str,
        value: float,
        unit: str,
        idx: int | None,
        dimensions: list[Dimension] | None,
        metric_type: MetricTypes,
    ) -> None:
        req_id = self._get_req(idx)
        dims = self._add_default_dims(req_id, dimensions)
        metric = self._get_or_add_metric(name, unit, dims, metric_type)
        metric.add_or_update(value, [d.value for d in dims], req_id)

    def add_metric(
        self,
        name: str,
        value: float,
        unit: str,
        idx: int | None = None,
        dimensions: list[Dimension] | None = None,
        metric_type: MetricTypes = MetricTypes.COUNTER,
    ) -> None:
        """Record a metric of any unit and type (a counter by default)."""
        self._record(name, value, unit, idx, dimensions, metric_type)

    def add_counter(
        self, name: str, value: float, idx: int | None = None, dimensions: list[Dimension] | None = None
    ) -> None:
        """Increment a counter (unit ``Count``)."""
        self._record(name, value, "count", idx, dimensions, MetricTypes.COUNTER)

    def add_time(
        self,
        name: str,
        value: float,
        idx: int | None = None,
        unit: str = "ms",
        dimensions: list[Dimension] | None = None,
        metric_type: MetricTypes = MetricTypes.GAUGE,
    ) -> None:
        """Record a duration in ``ms`` or ``s`` (a gauge by default)."""
        if unit not in ("ms", "s"):
            raise MetricsCacheValueError("the unit for a timed metric should be one of ['ms', 's']")
        self._record(name, value, unit, idx, dimensions, metric_type)

    def add_size(
        self,
        name: str,
        value: float,
        idx: int | None = None,
        unit: str = "MB",
        dimensions: list[Dimension] | None = None,
        metric_type: MetricTypes = MetricTypes.GAUGE,
    ) -> None:
        """Record a size in ``MB``, ``kB``, ``GB`` or ``B`` (a gauge by default)."""
        if unit not in ("MB", "kB", "GB", "B"):
            raise ValueError("The unit for size based metric is one of ['MB','kB', 'GB', 'B']")
        self._record(name, value, unit, idx, dimensions, metric_type)

    def add_percent(
        self,
        name: str,
        value: float,
        idx: int | None = None,
        dimensions: list[Dimension] | None = None,
        metric_type: MetricTypes = MetricTypes.GAUGE,
    ) -> None:
        """Record a percentage (a gauge by default)."""
        self._record(name, value, "percent", idx, dimensions, metric_type)

    def add_error(self, name: str, value: float, dimensions: list[Dimension] | None = None) -> None:
        """Record an error counter (``Level=Error``, no request id)."""
        dims = self._add_default_dims(None, dimensions)
        metric = self._get_or_add_metric(name, "", dims, MetricTypes.COUNTER)
        metric.add_or_update(value, [d.value for d in dims])

    def _get_or_add_metric(
        self, metric_name: str, unit: str, dimensions: list[Dimension], metric_type: MetricTypes
    ) -> CachingMetric:
        try:
            return self.get_metric(metric_name, metric_type)
        except MetricsCacheKeyError:
            return self.add_metric_to_cache(
                metric_name, unit, [d.name for d in dimensions], metric_type=metric_type
            )

    def get_metric(self, metric_name: str, metric_type: MetricTypes = MetricTypes.COUNTER) -> CachingMetric:
        """The cached metric of that type and name, else :class:`MetricsCacheKeyError`."""
        _check_type(metric_name, str, "`metric_name` must be a str")
        _check_type(metric_type, MetricTypes, "`metric_type` must be a MetricTypes enum")
        try:
            return self.cache[metric_type][metric_name]
        except KeyError:
            raise MetricsCacheKeyError(
                f"Metric of type '{metric_type}' and name '{metric_name}' doesn't exist"
            ) from None

    def add_metric_to_cache(
        self,
        metric_name: str,
        unit: str,
        dimension_names: list[str] | None = None,
        metric_type: MetricTypes = MetricTypes.COUNTER,
    ) -> CachingMetric:
        """Create a metric (replacing one of the same type and name) and return it."""
        _check_type(metric_name, str, "`metric_name` must be a str")
        _check_type(unit, str, "`unit` must be a str")
        _check_type(metric_type, MetricTypes, "`metric_type` must be a MetricTypes enum")
        if dimension_names:
            _check_type(dimension_names, list, "`dimension_names` should be a list of dimension name strings")
        by_name = self.cache.setdefault(metric_type, {})
        if metric_name in by_name:
            logger.warning("Overriding existing key %s:%s", metric_type, metric_name)
        metric = CachingMetric(metric_name, unit, dimension_names, metric_type, sink=self.sink)
        by_name[metric_name] = metric
        return metric

    def cache_keys(self) -> list[str]:
        """``["gauge:HandlerTime", …]`` (a testing helper in TorchServe)."""
        return [f"{t.value}:{name}" for t, metrics in self.cache.items() for name in metrics]

    @abc.abstractmethod
    def initialize_cache(self) -> None:
        """Create the cache's predefined metrics."""


class MetricsCacheYamlImpl(MetricCacheAbstract):
    """The metric cache every handler gets as ``context.metrics``.

    Without a ``config_file_path`` it starts with TorchServe's default model metrics
    (``HandlerTime`` and ``PredictionTime``, gauges in ms with ``ModelName`` and ``Level``).
    With one, the file's ``model_metrics`` section is loaded instead (safe YAML).
    """

    def __init__(
        self,
        config_file_path: str | None = None,
        *,
        model_name: str | None = None,
        sink: MetricSink | None = None,
    ) -> None:
        super().__init__(config_file_path, model_name=model_name, sink=sink)
        self._parsed_file: dict[str, Any] = {"model_metrics": _DEFAULT_MODEL_METRICS}
        if config_file_path:
            self._parse_yaml_file(config_file_path)
        self.initialize_cache()

    def _parse_yaml_file(self, config_file_path: str) -> None:
        import yaml  # noqa: PLC0415 - only a custom metrics file needs PyYAML

        try:
            with open(config_file_path, encoding="utf-8") as f:
                parsed = yaml.safe_load(f)
        except yaml.YAMLError as exc:
            raise MetricsCachePyYamlError(f"Error parsing file {config_file_path}: {exc}") from exc
        except OSError as exc:
            raise MetricsCacheIOError(f"Error reading file {config_file_path}: {exc}") from exc
        if not isinstance(parsed, dict):
            raise GeneralMetricsCacheError(f"General error found in file {config_file_path}: not a mapping")
        self._parsed_file = parsed

    def initialize_cache(self) -> None:
        """Create the metrics of the ``model_metrics`` section (``{type: [{name, unit, dimensions}]}``)."""
        section = self._parsed_file.get("model_metrics")
        if not section:
            raise MetricsCacheValueError("Missing `model_metrics` specification")
        for type_name, metrics in section.items():
            try:
                metric_type = MetricTypes(type_name)
            except ValueError as exc:
                raise MetricsCacheKeyError(f"Invalid metric type: {exc}") from exc
            for spec in metrics or []:
                try:
                    self.add_metric_to_cache(spec["name"], spec["unit"], spec["dimensions"], metric_type)
                except KeyError as exc:
                    raise MetricsCacheKeyError(f"Key not found in cache spec: {exc}") from exc


_DEFAULT_MODEL_METRICS: dict[str, list[dict[str, Any]]] = {
    "gauge": [
        {"name": "HandlerTime", "unit": "ms", "dimensions": ["ModelName", "Level"]},
        {"name": "PredictionTime", "unit": "ms", "dimensions": ["ModelName", "Level"]},
    ]
}

#: Ember's name for the cache class.
MetricCache = MetricsCacheYamlImpl

__all__ = [
    "DEFAULT_SINK",
    "CachingMetric",
    "Dimension",
    "GeneralMetricsCacheError",
    "MetricAbstract",
    "MetricCache",
    "MetricCacheAbstract",
    "MetricSink",
    "MetricTypes",
    "MetricsCacheIOError",
    "MetricsCacheKeyError",
    "MetricsCachePyYamlError",
    "MetricsCacheTypeError",
    "MetricsCacheValueError",
    "MetricsCacheYamlImpl",
    "Units",
]
