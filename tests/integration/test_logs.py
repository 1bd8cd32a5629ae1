"""Log files of a real server: TorchServe's text lines, JSON lines with request ids, background writing."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx

from tests.conftest import archive, write_handler
from tests.ember_server import EmberServer

PRINTING_HANDLER = """
def handle(data, context):
    if data is None:
        return None
    print("handling", len(data), "request(s)", flush=True)
    return [row.get("body") for row in data]
"""
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d,\d{3}"


def test_text_logs_have_torchserves_line_formats(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    archive(store, "echo", write_handler(tmp_path / "src", "printing_handler.py", PRINTING_HANDLER))
    with EmberServer(tmp_path / "run", store, models=["echo.mar"]) as server:
        assert (
            httpx.post(server.inference_url + "/predictions/echo", content=b"x", timeout=30).status_code
            == 200
        )
    logs = tmp_path / "run" / "logs"
    access = (logs / "access_log.log").read_text()
    assert re.search(
        STAMP + r' - /127\.0\.0\.1:\d+ "POST /predictions/echo HTTP/1\.1" 200 \d+$', access, re.M
    )
    ts_log = (logs / "ts_log.log").read_text()
    assert re.search(STAMP + r" \[INFO \] \S+ emberserve\.server - Ember \S+ starting", ts_log)
    model_log = (logs / "model_log.log").read_text()
    assert re.search(
        STAMP + r" \[INFO \] W-9000-echo_1\.0-stdout \S+ - handling 1 request\(s\)$", model_log, re.M
    )


def test_json_lines_carry_the_request_id_and_async_logging_loses_nothing(
    echo_store: Path, tmp_path: Path
) -> None:
    config = {"log_format": "json", "async_logging": "true"}
    with EmberServer(tmp_path / "run", echo_store, models=["echo.mar"], extra_config=config) as server:
        ids = []
        for _ in range(20):
            reply = httpx.post(server.inference_url + "/predictions/echo", content=b"x", timeout=30)
            ids.append(reply.headers["x-request-id"])
    logs = tmp_path / "run" / "logs"
    access = [json.loads(line) for line in (logs / "access_log.log").read_text().splitlines()]
    logged = [entry.get("request_id") for entry in access if "/predictions/echo" in entry["message"]]
    assert logged == ids  # every request, in order, flushed at shutdown
    assert set(access[0]) >= {"time", "level", "thread", "logger", "message"}
    for line in (logs / "ts_log.log").read_text().splitlines():
        assert json.loads(line)["logger"].startswith("emberserve")
