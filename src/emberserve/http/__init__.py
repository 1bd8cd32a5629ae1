"""HTTP edge: connections (``connection``), TorchServe answer conventions (``responses``), request
decoding into handler inputs (``encoding``) and the inference / management / metrics routers."""
