"""One loaded model inside a worker: ``LoadModel`` → handler, ``Predict`` batch → Results.

:class:`HandlerService` is the I/O-free heart of the worker process (:mod:`emberserve.workers.child`
adds the socket). It owns the handler's :class:`~emberserve.handlers.context.Context` and metric
cache, runs the handler on a batch, and maps everything the handler can do — return, raise,
return garbage — to exactly one :class:`~emberserve.workers.protocol.Result` per request, as
TorchServe's ``ts.service.Service.predict`` does. A handler failure never escapes ``predict``.

Example::

    service = HandlerService.load(load_model_message)       # cwd/sys.path set up by the worker
    results = service.predict(predict_message.batch)
    records = service.drain_metrics()                       # PredictionTime, HandlerTime, custom
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from emberserve.handlers.context import Context
from emberserve.handlers.inputs import build_batch
from emberserve.handlers.loader import LoadedHandler, load_handler
from emberserve.handlers.metrics import DEFAULT_SINK, MetricsCacheYamlImpl
from emberserve.handlers.outputs import (
    PREDICTION_FAILED,
    UNSUPPORTED_OUTPUT,
    UnsupportedOutputError,
    error_results,
    exception_status,
    output_problem,
    results_from_output,
)
from emberserve.handlers.streaming import StreamCancelled
from emberserve.workers.protocol import LoadModel, MetricRecord, Request, Result

log = logging.getLogger(__name__)

PREDICTION_METRIC = "PredictionTime"


class HandlerService:
    """A handler bound to its context; see the module docstring."""

    def __init__(
        self,
        context: Context,
        handler: LoadedHandler,
        metrics: MetricsCacheYamlImpl,
        decode_input_request: bool,
    ) -> None:
        self.context = context
        self.handler = handler
        self.metrics = metrics
        self.decode_input_request = decode_input_request

    @classmethod
    def load(cls, message: LoadModel, stream_sink: Callable[[Result], None] | None = None) -> HandlerService:
        """Build the context, import and initialise the handler named by ``message``.

        The caller has already made ``message.model_dir`` the cwd and first entry of ``sys.path``
        and installed the ``ts`` compat finder. Exceptions from the handler propagate.
        """
        # The worker-wide sink: metric objects a handler builds itself report there too.
        metrics = MetricsCacheYamlImpl(model_name=message.model_name, sink=DEFAULT_SINK)
        # TorchServe attributes load-time metrics to a made-up request id; a fixed name says more.
        metrics.set_request_ids("load")
        context = Context(
            message.model_name,
            message.model_dir,
            message.manifest,
            message.batch_size,
            message.gpu_id,
            message.server_version,
            message.limit_max_image_pixels,
            metrics,
            message.model_yaml_config or {},
        )
        context.stream_sink = stream_sink
        handler = load_handler(message.handler, context, message.envelope or None)
        return cls(context, handler, metrics, message.decode_input_request)

    def predict(self, requests: Sequence[Request]) -> list[Result]:
        """Run the handler on one batch; one Result per request, in order. Never raises."""
        batch = build_batch(requests, self.decode_input_request)
        ids = batch.request_ids
        context = self.context
        context.request_ids = ids
        context.request_processor = batch.processors
        self.metrics.set_request_ids(ids)
        start = time.perf_counter()
        try:
            output = self.handler.entry_point(batch.rows, context)
        except StreamCancelled as exc:
            log.info("Streaming stopped: %s", exc)
            return error_results(ids, 503, PREDICTION_FAILED)
        except Exception as exc:
            status, message = exception_status(exc)
            log.warning("Invoking custom service failed (%s %s)", status, message, exc_info=True)
            return error_results(ids, status, message)
        problem = output_problem(output, len(requests))
        if problem is not None:
            got = len(output) if isinstance(output, list) else type(output).__name__
            log.warning(
                "model: %s, %s: expected a list of %d, got %s",
                context.model_name,
                problem,
                len(requests),
                got,
            )
            return error_results(ids, 503, problem)
        self.metrics.add_time(PREDICTION_METRIC, round((time.perf_counter() - start) * 1000, 2))
        try:
            return results_from_output(output, context, request_ids=ids)
        except UnsupportedOutputError as exc:
            log.warning("Unable to serialize model output: %s", exc)
            return error_results(ids, 503, UNSUPPORTED_OUTPUT)
        except Exception:
            # A stopping criterion that raised, a status that is not a number…: the handler's fault.
            log.warning("Invalid response set by the handler", exc_info=True)
            return error_results(ids, 503, PREDICTION_FAILED)

    def drain_metrics(self) -> list[MetricRecord]:
        """Metric records added since the last call (the worker sends them to the frontend)."""
        return self.metrics.drain()


__all__ = ["PREDICTION_METRIC", "HandlerService"]
