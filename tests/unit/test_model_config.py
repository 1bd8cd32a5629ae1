"""model-config.yaml: the hostile-input-proof loader and the typed frontend settings."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from emberserve.archive.model_config import MAX_YAML_DEPTH, ModelYamlSettings, load_model_config
from emberserve.errors import ArchiveError
from tests.hostile_archives import yaml_alias_bomb, yaml_python_tag

# -- loader ------------------------------------------------------------------------------------------


def test_loads_a_typical_config() -> None:
    cfg = load_model_config(b"""
# frontend parameters
minWorkers: 1
maxWorkers: 1
batchSize: 4
responseTimeout: 60
deviceIds: [0, 1]
handler:
  topk: 3
  labels: ["a", "b"]
pt2: {backend: inductor}
""")
    assert cfg == {
        "minWorkers": 1,
        "maxWorkers": 1,
        "batchSize": 4,
        "responseTimeout": 60,
        "deviceIds": [0, 1],
        "handler": {"topk": 3, "labels": ["a", "b"]},
        "pt2": {"backend": "inductor"},
    }


@pytest.mark.parametrize("text", [b"", b"# only a comment\n", b"---\n", b"~\n"])
def test_empty_documents_give_an_empty_mapping(text: bytes) -> None:
    assert load_model_config(text) == {}


def test_plain_data_only() -> None:
    cfg = load_model_config(
        b"when: 2024-01-01\nstamp: 2001-12-14t21:59:43.10-05:00\neq: =\nyes_: yes\n"
        b"f: 1.5\nn: null\nhex: 0x10\nexplicit: !!str 123\n"
    )
    assert cfg == {
        "when": "2024-01-01",
        "stamp": "2001-12-14t21:59:43.10-05:00",
        "eq": "=",
        "yes_": True,
        "f": 1.5,
        "n": None,
        "hex": 16,
        "explicit": "123",
    }


def test_inline_merge_key_without_alias_is_allowed() -> None:
    assert load_model_config(b"a:\n  <<: {x: 1}\n  y: 2\n") == {"a": {"x": 1, "y": 2}}


@pytest.mark.security
def test_python_tag_is_refused_and_never_runs(tmp_path: Path) -> None:
    sentinel = tmp_path / "PWNED"
    with pytest.raises(ArchiveError, match="tag"):
        load_model_config(yaml_python_tag(sentinel))
    assert not sentinel.exists()


@pytest.mark.security
@pytest.mark.parametrize(
    "text",
    [
        b"x: !!python/name:os.system\n",
        b"x: !!python/object:collections.OrderedDict {}\n",
        b"x: !!binary aGVsbG8=\n",
        b"x: !!timestamp 2001-12-14\n",
        b"x: !!set {a: null}\n",
        b"x: !!omap [a: 1]\n",
        b"x: !custom 1\n",
        b"!!python/object/new:os.system [echo]\n",
    ],
)
def test_non_core_tags_are_refused(text: bytes) -> None:
    with pytest.raises(ArchiveError, match="tag"):
        load_model_config(text)


@pytest.mark.security
def test_alias_bomb_is_refused_quickly() -> None:
    started = time.monotonic()
    with pytest.raises(ArchiveError, match="anchors"):
        load_model_config(yaml_alias_bomb(levels=20, fan_out=20))
    assert time.monotonic() - started < 1


@pytest.mark.security
@pytest.mark.parametrize(
    ("text", "match"),
    [
        (b"a: &x 1\n", "anchors"),
        (b"a: *x\n", "aliases"),
        (b"base: {k: 1}\nb:\n  <<: *base\n", "aliases"),
    ],
)
def test_anchors_and_aliases_are_refused(text: bytes, match: str) -> None:
    with pytest.raises(ArchiveError, match=match):
        load_model_config(text)


@pytest.mark.security
def test_size_cap_is_checked_before_parsing() -> None:
    started = time.monotonic()
    with pytest.raises(ArchiveError, match="larger than 1048576 bytes"):
        load_model_config(b"k: " + b"v" * (10 << 20))
    with pytest.raises(ArchiveError, match="larger than 10 bytes"):
        load_model_config(b"minWorkers: 1\n", max_bytes=10)
    assert time.monotonic() - started < 1


@pytest.mark.security
@pytest.mark.parametrize(
    "text",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b"a:\n" + b"".join(b" " * i + b"- \n" for i in range(1, 200)),
    ],
)
def test_deep_nesting_is_refused(text: bytes) -> None:
    with pytest.raises(ArchiveError):
        load_model_config(text)


def test_nesting_up_to_the_cap_is_fine() -> None:
    lists = MAX_YAML_DEPTH - 1  # plus the top-level mapping
    cfg = load_model_config(b"a: " + b"[" * lists + b"]" * lists)
    value = cfg["a"]
    for _ in range(lists - 1):
        value = value[0]
    assert value == []
    with pytest.raises(ArchiveError, match=f"deeper than {MAX_YAML_DEPTH}"):
        load_model_config(b"a: " + b"[" * (lists + 1) + b"]" * (lists + 1))


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (b"- a\n- b\n", "top level must be a mapping"),
        (b"just a string\n", "top level must be a mapping"),
        (b"a: 1\n---\nb: 2\n", "another document"),
        (b"a: [1, 2\n", "Failed to parse"),
        (b"a: b: c\n", "Failed to parse"),
        (b"? [a, b]\n: 1\n", "Failed to parse"),
        (b"big: " + b"9" * 5000 + b"\n", "Failed to parse"),
        (b"\x00\x01", "Failed to parse"),
    ],
)
def test_invalid_yaml_raises_archive_error(text: bytes, match: str) -> None:
    with pytest.raises(ArchiveError, match=match):
        load_model_config(text)


# -- settings ----------------------------------------------------------------------------------------


def test_settings_full_mapping() -> None:
    s = ModelYamlSettings.from_config(
        {
            "minWorkers": 2,
            "maxWorkers": 4,
            "batchSize": 8,
            "maxBatchDelay": 50,
            "responseTimeout": 30,
            "startupTimeout": 90,
            "deviceType": "GPU",
            "deviceIds": [0, 2],
            "parallelType": "TP",
            "parallelLevel": 2,
            "maxRetryTimeoutInSec": 60,
            "clientTimeoutInMills": 1000,
            "jobQueueSize": 10,
            "useJobTicket": True,
            "sequenceMaxIdleMSec": 100,
            "sequenceTimeoutMSec": 200,
            "maxSequenceJobQueueSize": 3,
            "maxNumSequence": 5,
            "continuousBatching": True,
            "sequenceBatching": False,
            "asyncCommunication": True,
            "useVenv": False,
            "handler": {"anything": "goes"},
        }
    )
    assert s == ModelYamlSettings(
        min_workers=2,
        max_workers=4,
        batch_size=8,
        max_batch_delay=50,
        response_timeout=30,
        startup_timeout=90,
        device_type="gpu",
        device_ids=(0, 2),
        parallel_type="tp",
        parallel_level=2,
        max_retry_timeout_in_sec=60,
        client_timeout_in_mills=1000,
        job_queue_size=10,
        use_job_ticket=True,
        sequence_max_idle_msec=100,
        sequence_timeout_msec=200,
        max_sequence_job_queue_size=3,
        max_num_sequence=5,
        continuous_batching=True,
        sequence_batching=False,
        async_communication=True,
        use_venv=False,
    )


def test_empty_config_means_nothing_set() -> None:
    assert ModelYamlSettings.from_config({}) == ModelYamlSettings()


@pytest.mark.parametrize(
    ("cfg", "expected"),
    [
        ({"minWorkers": 1, "maxWorkers": 1}, (1, 1)),
        ({"minWorkers": 0, "maxWorkers": 2}, (1, 2)),  # TorchServe raises minWorkers to 1
        ({"minWorkers": -3, "maxWorkers": 1}, (1, 1)),
        ({"minWorkers": 2}, (None, None)),  # only a valid pair counts (ApiUtils)
        ({"maxWorkers": 2}, (None, None)),
        ({"minWorkers": 3, "maxWorkers": 2}, (None, None)),
        ({"minWorkers": 1, "maxWorkers": 0}, (None, None)),
    ],
)
def test_worker_pair_rule(cfg: dict[str, int], expected: tuple[int | None, int | None]) -> None:
    s = ModelYamlSettings.from_config(cfg)
    assert (s.min_workers, s.max_workers) == expected


@pytest.mark.parametrize(
    ("key", "value", "field", "expected"),
    [
        ("batchSize", 0, "batch_size", 1),
        ("batchSize", -5, "batch_size", 1),
        ("maxBatchDelay", 0, "max_batch_delay", None),
        ("maxBatchDelay", -1, "max_batch_delay", None),
        ("responseTimeout", 0, "response_timeout", None),
        ("startupTimeout", -1, "startup_timeout", None),
        ("jobQueueSize", -1, "job_queue_size", None),  # "-1 means no customized setting"
        ("maxRetryTimeoutInSec", -1, "max_retry_timeout_in_sec", 0),
        ("clientTimeoutInMills", -1, "client_timeout_in_mills", 0),
        ("maxSequenceJobQueueSize", 0, "max_sequence_job_queue_size", 1),
        ("maxNumSequence", -1, "max_num_sequence", 1),
        ("deviceType", "", "device_type", None),
        ("deviceIds", [], "device_ids", None),
        ("parallelLevel", -1, "parallel_level", None),
        ("parallelLevel", 0, "parallel_level", None),
    ],
)
def test_torchserve_value_rules(key: str, value: object, field: str, expected: object) -> None:
    assert getattr(ModelYamlSettings.from_config({key: value}), field) == expected


def test_torchrun_sets_the_parallel_level_in_file_order() -> None:
    s = ModelYamlSettings.from_config({"torchrun": {"nproc-per-node": 4}})
    assert s.parallel_level == 4
    assert s.torchrun is not None
    assert s.torchrun["nproc-per-node"] == 4
    assert (
        ModelYamlSettings.from_config({"torchrun": {"nproc-per-node": 4}, "parallelLevel": 2}).parallel_level
        == 2
    )
    assert (
        ModelYamlSettings.from_config({"parallelLevel": 2, "torchrun": {"nproc-per-node": 4}}).parallel_level
        == 4
    )
    assert ModelYamlSettings.from_config({"torchrun": {"nnodes": 1}}).parallel_level == 1


@pytest.mark.parametrize(
    ("cfg", "match"),
    [
        ({"batchSize": "8"}, "batchSize must be a 32-bit integer"),
        ({"minWorkers": 1.5}, "minWorkers must be a 32-bit integer"),
        ({"maxWorkers": True}, "maxWorkers must be a 32-bit integer"),
        ({"responseTimeout": 2**31}, "responseTimeout must be a 32-bit integer"),
        ({"jobQueueSize": [1]}, "jobQueueSize"),
        ({"useVenv": 1}, "useVenv must be true or false"),
        ({"continuousBatching": "yes"}, "continuousBatching must be true or false"),
        ({"deviceType": "tpu"}, "deviceType must be one of cpu, gpu"),
        ({"deviceType": 1}, "deviceType"),
        ({"parallelType": "dp"}, "parallelType must be one of"),
        ({"deviceIds": "0,1"}, "deviceIds must be a list of integers"),
        ({"deviceIds": [0, "1"]}, "deviceIds must be a list of integers"),
        ({"deviceIds": [True]}, "deviceIds must be a list of integers"),
        ({"torchrun": [1]}, "torchrun must be a mapping"),
        ({"torchrun": {"nproc-per-node": "4"}}, "torchrun.nproc-per-node must be a 32-bit integer"),
        ({"torchrun": {"rdzv-backend": 5}}, "torchrun.rdzv-backend must be a string"),
    ],
)
def test_wrong_types_raise_archive_error(cfg: dict[str, object], match: str) -> None:
    with pytest.raises(ArchiveError, match=match):
        ModelYamlSettings.from_config(cfg)


def test_loader_and_settings_together() -> None:
    cfg = load_model_config(
        b"minWorkers: 1\nmaxWorkers: 1\nbatchSize: 1\nmaxBatchDelay: 100\nresponseTimeout: 60\n"
        b"custom_section:\n  answer: 42\n"
    )
    s = ModelYamlSettings.from_config(cfg)
    assert (s.min_workers, s.max_workers, s.batch_size, s.max_batch_delay, s.response_timeout) == (
        1,
        1,
        1,
        100,
        60,
    )
    assert cfg["custom_section"] == {"answer": 42}
