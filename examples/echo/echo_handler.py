"""Echo model: returns each request's body (or its ``data`` field) unchanged. No torch needed.

Used by the benchmarks to measure the server's own overhead.
"""


def handle(data, context):
    if data is None:  # TorchServe calls a function entry point once at load time with no data
        return None
    return [row.get("data") if row.get("data") is not None else row.get("body") for row in data]
