"""The handler runtime of Ember's worker processes: TorchServe's handler contract, reimplemented.

Modules (import them directly; this package imports nothing, so the frontend and a worker that
does not need a module never pay for it):

=================  ==========================================================================
``context``        ``Context`` / ``RequestProcessor`` handed to every handler (``ts.context``)
``inputs``         requests of a batch → handler rows and request headers
``outputs``        handler return values and exceptions → protocol Results
``metrics``        ``context.metrics`` and the ``ts.metrics.*`` API
``streaming``      ``send_intermediate_predict_response``
``envelopes``      ``service_envelope`` body / json / kserve / kservev2
``loader``         MANIFEST ``handler`` → entry point, TorchServe's rules
``service``        one loaded model: LoadModel → handler, Predict → Results
``base_handler``   ``BaseHandler`` (imports torch when used)
``utils``          ``ts.utils.util`` helpers (``PredictionException``, ``map_class_to_label``…)
``timer``          ``@timed`` (``ts.handler_utils.timer``)
``compat``         the ``ts.*`` import hook installed in workers
=================  ==========================================================================
"""
