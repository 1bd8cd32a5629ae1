"""MANIFEST.json: parsing, validation, and writing in torch-model-archiver 0.12's exact shape."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from emberserve.archive.manifest import (
    ARCHIVER_VERSION,
    MODEL_NAME_PATTERN,
    Manifest,
    is_valid_model_name,
)
from emberserve.errors import ArchiveError

# What torch-model-archiver 0.12 wrote for: --model-name full_demo --version 3.1 --serialized-file model.pt
# --model-file model.py --handler noop_handler:handle -r requirements.txt -c cfg.yaml --runtime python3
FULL = """{
  "createdOn": "22/11/2026 07:51:34",
  "runtime": "python3",
  "model": {
    "modelName": "full_demo",
    "serializedFile": "model.pt",
    "handler": "noop_handler:handle",
    "modelFile": "model.py",
    "modelVersion": "3.1",
    "requirementsFile": "requirements.txt",
    "configFile": "cfg.yaml"
  },
  "archiverVersion": "0.12.0"
}"""


def test_parse_full_manifest() -> None:
    m = Manifest.parse(FULL.encode())
    assert (m.model_name, m.model_version, m.handler, m.runtime) == (
        "full_demo",
        "3.1",
        "noop_handler:handle",
        "python3",
    )
    assert (m.serialized_file, m.model_file, m.requirements_file, m.config_file) == (
        "model.pt",
        "model.py",
        "requirements.txt",
        "cfg.yaml",
    )
    assert m.extensions is None
    assert (m.created_on, m.archiver_version) == ("22/11/2026 07:51:34", "0.12.0")
    assert m.raw == json.loads(FULL)


def test_to_json_reproduces_the_archiver_byte_for_byte() -> None:
    assert Manifest.parse(FULL.encode()).to_json() == FULL.encode()


def test_create_matches_the_archiver_and_round_trips() -> None:
    m = Manifest.create(
        "full_demo",
        "noop_handler:handle",
        model_version="3.1",
        serialized_file="model.pt",
        model_file="model.py",
        requirements_file="requirements.txt",
        config_file="cfg.yaml",
        runtime="python3",
        created_on=datetime(2026, 11, 22, 7, 51, 34),
    )
    assert m.to_json() == FULL.encode()
    assert m.raw == json.loads(FULL)
    assert Manifest.parse(m.to_json()) == m


def test_create_minimal_leaves_optional_keys_out() -> None:
    m = Manifest.create(
        "noop", "image_classifier", model_version="", created_on=datetime(2026, 1, 2, 3, 4, 5)
    )
    assert json.loads(m.to_json()) == {
        "createdOn": "02/01/2026 03:04:05",
        "runtime": "python",
        "model": {"modelName": "noop", "handler": "image_classifier"},
        "archiverVersion": ARCHIVER_VERSION,
    }


def test_created_on_defaults_to_now_in_the_archiver_format() -> None:
    stamp = Manifest.create("noop", "h.py").created_on
    assert abs((datetime.strptime(stamp, "%d/%m/%Y %H:%M:%S") - datetime.now()).total_seconds()) < 60


def test_non_ascii_is_escaped_like_json_dumps() -> None:
    m = Manifest.create("noop", "h.py", model_version="1.0é", created_on=datetime(2026, 1, 1))
    assert b'"modelVersion": "1.0\\u00e9"' in m.to_json()


def test_minimal_parse_defaults() -> None:
    m = Manifest.parse(b'{"model": {"modelName": "m"}}')
    assert (m.handler, m.runtime, m.model_version, m.created_on, m.archiver_version) == (
        "",
        "python",
        None,
        "",
        "",
    )
    assert m.to_json().startswith(b'{\n  "createdOn": "",\n  "runtime": "python"')


def test_unknown_keys_are_kept_in_raw_and_raw_is_read_only() -> None:
    m = Manifest.parse(b'{"description": "x", "model": {"modelName": "m", "envelope": "json"}}')
    assert m.raw["description"] == "x"
    assert m.raw["model"]["envelope"] == "json"
    with pytest.raises(TypeError):
        m.raw["description"] = "y"  # type: ignore[index]
    assert b"description" not in m.to_json()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "Failed to parse MANIFEST.json"),
        (b"\xff\xfe{}", "Failed to parse MANIFEST.json"),
        (b"{", "Failed to parse MANIFEST.json"),
        (b'"str"', "top level must be a JSON object"),
        (b"{}", "Missing Model entry in manifest file."),
        (b'{"model": null}', "Missing Model entry in manifest file."),
        (b'{"model": []}', '"model" must be a JSON object'),
        (b'{"model": {}}', "Model name is not defined."),
        (b'{"model": {"modelName": ""}}', "Model name is not defined."),
        (b'{"model": {"modelName": true}}', "modelName must be a string, not a boolean"),
        (b'{"model": {"modelName": "a b"}}', "must match"),
        (b'{"model": {"modelName": "-x"}}', "must match"),
        (b'{"model": {"modelName": "' + b"a" * 257 + b'"}}', "at most 256"),
        (b'{"model": {"modelName": "m", "handler": 1}}', "model.handler must be a string, not a number"),
        (
            b'{"model": {"modelName": "m", "serializedFile": {}}}',
            "serializedFile must be a string, not an object",
        ),
        (b'{"model": {"modelName": "m", "modelVersion": "../1.0"}}', "model version"),
        (b'{"model": {"modelName": "m", "modelVersion": "a\\nb"}}', "model version"),
        (b'{"model": {"modelName": "m", "modelVersion": ".."}}', "model version"),
        (b'{"runtime": "python4", "model": {"modelName": "m"}}', "Runtime is not defined or invalid."),
        (b'{"runtime": null, "model": {"modelName": "m"}}', "Runtime is not defined or invalid."),
        (b'{"createdOn": 5, "model": {"modelName": "m"}}', "createdOn must be a string"),
        (b'{"model": ' + b"[" * 10_000 + b"]" * 10_000 + b"}", "Failed to parse MANIFEST.json"),
        (
            b'{"model": {"modelName": "m", "modelVersion": 123456789012345678901234567890}}',
            "modelVersion must be a string",
        ),
    ],
)
def test_invalid_manifests_raise_archive_error(data: bytes, message: str) -> None:
    with pytest.raises(ArchiveError) as info:
        Manifest.parse(data)
    assert message in info.value.message
    assert info.value.http_status == 400


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("noop", True),
        ("resnet-18_v1.0", True),
        ("0abc", True),
        ("A.b-c_d", True),
        ("a" * 256, True),
        ("", False),
        (".hidden", False),
        ("_x", False),
        ("a/b", False),
        ("a\\b", False),
        ("a b", False),
        ("émoji", False),
        ("a\n", False),
        ("a" * 257, False),
        ("../x", False),
    ],
)
def test_model_name_rule(name: str, valid: bool) -> None:
    assert is_valid_model_name(name) is valid
    assert (MODEL_NAME_PATTERN.fullmatch(name) is not None) is (valid or len(name) > 256)
