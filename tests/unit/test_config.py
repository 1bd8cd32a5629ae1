"""config.properties values: parsing, defaults, validation, per-model JSON, derived settings."""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Mapping
from pathlib import Path

import pytest

import emberserve.config as config_module
from emberserve.archive.extract import ArchiveLimits
from emberserve.config import (
    CliOptions,
    ListenAddress,
    ModelSettings,
    ServerConfig,
    detect_gpu_count,
    load_config,
    parse_listen_address,
)
from emberserve.config_keys import InvalidValue
from emberserve.errors import ConfigError


def load_text(
    tmp_path: Path,
    text: str,
    *,
    environ: Mapping[str, str] | None = None,
    cpu_count: int = 3,
    gpu_count: int = 0,
    cli: CliOptions | None = None,
) -> ServerConfig:
    (tmp_path / "config.properties").write_text(text, encoding="utf-8")
    return load_config(cli or CliOptions(), environ or {}, tmp_path, cpu_count=cpu_count, gpu_count=gpu_count)


# -- defaults -------------------------------------------------------------------------------------------


def test_defaults_are_torchserves(tmp_path: Path) -> None:
    cfg = load_config(CliOptions(), {}, tmp_path, cpu_count=2, gpu_count=0)
    assert cfg.inference_address == ListenAddress("http", "127.0.0.1", 8080, "")
    assert cfg.management_address.url == "http://127.0.0.1:8081"
    assert cfg.metrics_address.url == "http://127.0.0.1:8082"
    assert (cfg.grpc_inference_address, cfg.grpc_inference_port) == ("127.0.0.1", 7070)
    assert (cfg.grpc_management_address, cfg.grpc_management_port) == ("127.0.0.1", 7071)
    assert cfg.default_workers_per_model == 2
    assert cfg.configured_default_workers_per_model == 0
    assert (cfg.job_queue_size, cfg.default_response_timeout, cfg.default_startup_timeout) == (100, 120, 120)
    assert cfg.unregister_model_timeout == 120
    assert (cfg.max_request_size, cfg.max_response_size) == (6553500, 6553500)
    assert cfg.metrics_mode == "log"
    assert cfg.enable_metrics_api is True
    assert cfg.allowed_urls == ("file://.*|http(s)?://.*",)
    assert cfg.decode_input_request is True
    assert cfg.limit_max_image_pixels is True
    assert cfg.disable_token_authorization is False
    assert cfg.enable_model_api is False
    assert cfg.token_expiration_min == 60
    assert cfg.initial_worker_port == 9000
    assert cfg.metric_time_interval == 60
    assert cfg.keystore_type == "PKCS12"
    assert cfg.model_store is None
    assert cfg.workflow_store is None
    assert cfg.load_models == ()
    assert cfg.service_envelope is None
    # Ember-only defaults
    assert (cfg.drain_timeout, cfg.batching_mode, cfg.max_workers_per_model) == (30, "adaptive", 64)
    assert (cfg.batch_size, cfg.max_batch_delay) == (1, 100)
    assert (cfg.restart_backoff_base_ms, cfg.max_restart_backoff_s) == (1000, 60.0)
    assert cfg.non_default_settings() == []


def test_default_warning_about_any_url(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "emberserve.config"):
        load_text(tmp_path, "")
    assert "can access any URL" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, "emberserve.config"):
        load_text(tmp_path, "allowed_urls=https://models\\\\.example\\\\.com/.*\n")
    assert "can access any URL" not in caplog.text


def test_server_config_can_be_built_directly_and_is_frozen() -> None:
    cfg = ServerConfig(job_queue_size=2)
    assert cfg.job_queue_size == 2
    assert cfg.default_workers_per_model >= 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.job_queue_size = 3  # type: ignore[misc]


def test_reference_start_sh_config(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    cfg = load_text(
        tmp_path,
        "inference_address=http://127.0.0.1:23480\n"
        "management_address=http://127.0.0.1:23481\n"
        "metrics_address=http://127.0.0.1:23482\n"
        "grpc_inference_address=127.0.0.1\n"
        "grpc_management_address=127.0.0.1\n"
        "grpc_inference_port=23470\n"
        "grpc_management_port=23471\n"
        f"model_store={store}\n"
        "disable_token_authorization=true\n"
        "enable_model_api=true\n",
    )
    assert (cfg.inference_address.port, cfg.management_address.port, cfg.metrics_address.port) == (
        23480,
        23481,
        23482,
    )
    assert (cfg.grpc_inference_port, cfg.grpc_management_port) == (23470, 23471)
    assert cfg.model_store == store.resolve()
    assert cfg.disable_token_authorization
    assert cfg.enable_model_api


# -- properties syntax ------------------------------------------------------------------------------------


def test_java_properties_syntax(tmp_path: Path) -> None:
    cfg = load_text(
        tmp_path,
        "# a comment\n"
        "! another comment\n"
        "job_queue_size : 12\n"
        "default_response_timeout 30\n"
        "cors_allowed_origin = https://a.example\\\n"
        "    .com\n"
        "cors_allowed_headers=X-\\u0041\\tB\n",
    )
    assert cfg.job_queue_size == 12
    assert cfg.default_response_timeout == 30
    assert cfg.cors_allowed_origin == "https://a.example.com"
    assert cfg.cors_allowed_headers == "X-A\tB"


def test_invalid_unicode_escape_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="escape"):
        load_text(tmp_path, "cors_allowed_origin=\\uZZZZ\n")


def test_duplicate_keys_last_wins_with_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "emberserve.config"):
        cfg = load_text(tmp_path, "job_queue_size=5\njob_queue_size=6\n")
    assert cfg.job_queue_size == 6
    assert "job_queue_size is set more than once" in caplog.text


def test_utf8_and_latin1_files(tmp_path: Path) -> None:
    (tmp_path / "config.properties").write_text(
        "cors_allowed_origin=https://café.example\n", encoding="utf-8"
    )
    assert load_config(CliOptions(), {}, tmp_path).cors_allowed_origin == "https://café.example"
    (tmp_path / "config.properties").write_bytes(
        "cors_allowed_origin=https://café.example\n".encode("latin-1")
    )
    assert load_config(CliOptions(), {}, tmp_path).cors_allowed_origin == "https://café.example"


def test_oversized_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config_module, "MAX_CONFIG_FILE_BYTES", 100)
    with pytest.raises(ConfigError, match="larger than 100 bytes"):
        load_text(tmp_path, "# " + "x" * 200 + "\n")


# -- scalar values ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["true", "TRUE", "True", " true "])
def test_booleans_are_case_insensitive(tmp_path: Path, text: str) -> None:
    assert load_text(tmp_path, f"enable_model_api={text}\n").enable_model_api is True


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("job_queue_size=abc", "expected a whole number from 1"),
        ("job_queue_size=0", "expected a whole number from 1"),
        ("job_queue_size=1_000", "expected a whole number"),
        ("max_request_size=-5", "expected a whole number from 1"),
        ("max_response_size=99999999999", "expected a whole number from 1 to 2147483647"),
        ("default_response_timeout=0", "expected a whole number from 1"),
        ("token_expiration_min=1.5", "expected a whole number"),
        ("enable_model_api=yes", "expected true or false"),
        ("decode_input_request=", "expected true or false"),
        ("metrics_mode=json", "expected one of log, prometheus"),
        ("batching_mode=fast", "expected one of adaptive, strict"),
        ("service_envelope=xml", "expected one of body, json, kserve, kservev2"),
        ("allowed_urls=https://ok/.*,(unclosed", "expected a valid regular expression"),
        ("blacklist_env_vars=AWS_[", "expected a valid regular expression"),
        ("inference_address=127.0.0.1:8080", "expected http://HOST:PORT"),
        ("management_address=http://127.0.0.1:99999", "out of range"),
        ("grpc_inference_port=70000", "expected a whole number from 0 to 65535"),
        ("grpc_management_address=not a host", "expected an IP address"),
        ("max_restart_backoff_s=-1", "expected a number >= 0"),
        ("model_snapshot=[1, 2]", "expected a JSON object"),
        ("load_models==x.mar", "expected FILE.mar or NAME=FILE.mar"),
    ],
)
def test_invalid_values_name_key_value_and_what_is_allowed(tmp_path: Path, line: str, expected: str) -> None:
    key, _, value = line.partition("=")
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, line + "\n")
    message = str(info.value)
    assert f"Invalid value for {key} (from file " in message
    assert repr(value) in message
    assert expected in message


def test_secrets_and_environment_stay_out_of_repr(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, "keystore_pass=s3cret\n", environ={"API_TOKEN": "t0k3n"})
    assert cfg.keystore_pass == "s3cret"
    assert "s3cret" not in repr(cfg)
    assert "t0k3n" not in repr(cfg)


def test_metrics_mode_is_normalised_and_metrics_format_is_an_alias(tmp_path: Path) -> None:
    assert load_text(tmp_path, "metrics_mode= Prometheus\n").metrics_mode == "prometheus"
    assert load_text(tmp_path, "metrics_format=prometheus\n").metrics_mode == "prometheus"
    assert load_text(tmp_path, "metrics_format=prometheus\nmetrics_mode=log\n").metrics_mode == "log"


def test_allowed_urls_split_on_commas(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, "allowed_urls=https://s3.amazonaws.com/.*, https://torchserve.pytorch.org/.*\n")
    assert cfg.allowed_urls == ("https://s3.amazonaws.com/.*", "https://torchserve.pytorch.org/.*")
    assert load_text(tmp_path, "allowed_urls=\n").allowed_urls == ()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("all", ("all",)),
        ("ALL", ("all",)),
        ("standalone", ()),
        ("", ()),
        ("noop.mar", ("noop.mar",)),
        ("model1=model1.mar, model2=model2.mar", ("model1=model1.mar", "model2=model2.mar")),
        ("a.mar b.mar", ("a.mar", "b.mar")),
        ("m=https://host/m.mar?x=1", ("m=https://host/m.mar?x=1",)),
    ],
)
def test_load_models_forms(tmp_path: Path, value: str, expected: tuple[str, ...]) -> None:
    assert load_text(tmp_path, f"load_models={value}\n").load_models == expected


def test_paths_are_absolute_from_cwd_and_model_store_must_exist(tmp_path: Path) -> None:
    (tmp_path / "store").mkdir()
    cfg = load_text(tmp_path, "model_store=store\ncertificate_file=certs/c.pem\n")
    assert cfg.model_store == (tmp_path / "store").resolve()
    assert cfg.certificate_file == (tmp_path / "certs" / "c.pem").resolve()
    with pytest.raises(ConfigError, match=r"model_store directory not found: .*nowhere"):
        load_text(tmp_path, "model_store=nowhere\n")
    with pytest.raises(ConfigError, match="workflow_store directory not found"):
        load_text(tmp_path, "model_store=store\nworkflow_store=nowhere\n")


# -- addresses --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "role", "expected"),
    [
        ("http://127.0.0.1:8080", "inference", ListenAddress("http", "127.0.0.1", 8080, "")),
        ("HTTPS://0.0.0.0:8443", "inference", ListenAddress("https", "0.0.0.0", 8443, "")),
        ("http://[::1]:8080", "inference", ListenAddress("http", "::1", 8080, "")),
        ("http://[0:0:0:0:0:0:0:1]:1", "inference", ListenAddress("http", "::1", 1, "")),
        ("http://localhost:0", "inference", ListenAddress("http", "localhost", 0, "")),
        ("unix:/tmp/ember.sock", "inference", ListenAddress("unix", "", 0, "/tmp/ember.sock")),
        ("http://127.0.0.1", "inference", ListenAddress("http", "127.0.0.1", 80, "")),
        ("https://127.0.0.1", "inference", ListenAddress("https", "127.0.0.1", 443, "")),
        ("http://127.0.0.1", "management", ListenAddress("http", "127.0.0.1", 8081, "")),
        ("https://127.0.0.1", "metrics", ListenAddress("https", "127.0.0.1", 8445, "")),
    ],
)
def test_parse_listen_address(text: str, role: str, expected: ListenAddress) -> None:
    assert parse_listen_address(text, role=role) == expected


@pytest.mark.parametrize(
    "text",
    [
        "127.0.0.1:8080",
        "ftp://127.0.0.1:21",
        "http://",
        "http://host:port",
        "http://127.0.0.1:8080/path",
        "http://::1:8080",
        "http://[::g]:8080",
        "http://a b:8080",
        "http://host:123456",
        "unix:relative.sock",
    ],
)
def test_parse_listen_address_rejects(text: str) -> None:
    with pytest.raises(InvalidValue, match=r"expected|not an|out of range"):
        parse_listen_address(text)


def test_listen_address_url_and_wildcard() -> None:
    assert parse_listen_address("http://[::]:8080").url == "http://[::]:8080"
    assert parse_listen_address("http://[::]:8080").is_wildcard
    assert parse_listen_address("http://0.0.0.0:1").is_wildcard
    assert not parse_listen_address("http://127.0.0.1:1").is_wildcard
    assert not parse_listen_address("unix:/x.sock").is_wildcard
    for text in ("http://127.0.0.1:8080", "https://[::1]:8443", "unix:/run/e.sock"):
        assert parse_listen_address(parse_listen_address(text).url) == parse_listen_address(text)


def test_grpc_addresses_accept_ipv6_literals(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, "grpc_inference_address=::1\ngrpc_management_address=localhost\n")
    assert (cfg.grpc_inference_address, cfg.grpc_management_address) == ("::1", "localhost")


# -- models= JSON ------------------------------------------------------------------------------------------

DOCS_MODELS = """models={\\
  "noop": {\\
    "1.0": {\\
        "defaultVersion": true,\\
        "marName": "noop.mar",\\
        "minWorkers": 1,\\
        "maxWorkers": 1,\\
        "batchSize": 4,\\
        "maxBatchDelay": 100,\\
        "responseTimeout": 120\\
    }\\
  },\\
  "vgg16": {\\
    "1.0": {\\
        "defaultVersion": true,\\
        "marName": "vgg16.mar",\\
        "minWorkers": 1,\\
        "maxWorkers": 4,\\
        "batchSize": 8,\\
        "maxBatchDelay": 100,\\
        "responseTimeout": 120\\
    },\\
    "2.0": {"deviceType": "GPU", "deviceIds": [0, 1], "parallelType": "pp", "jobQueueSize": 5,\\
            "useVenv": true, "runtimeType": "python3", "startupTimeout": 30}\\
  }\\
}
"""


def test_models_json_from_the_torchserve_docs(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, DOCS_MODELS)
    assert cfg.models["noop"]["1.0"] == ModelSettings(
        min_workers=1,
        max_workers=1,
        batch_size=4,
        max_batch_delay=100,
        response_timeout=120,
        default_version=True,
        mar_name="noop.mar",
    )
    v2 = cfg.models["vgg16"]["2.0"]
    assert (v2.device_type, v2.device_ids, v2.parallel_type, v2.job_queue_size) == ("gpu", (0, 1), "pp", 5)
    assert (v2.use_venv, v2.runtime_type, v2.startup_timeout) == (True, "python3", 30)
    assert cfg.model_settings("vgg16", "1.0") is cfg.models["vgg16"]["1.0"]
    assert cfg.model_settings("vgg16", None) is cfg.models["vgg16"]["1.0"]  # defaultVersion
    assert cfg.model_settings("noop", None) is cfg.models["noop"]["1.0"]
    assert cfg.model_settings("vgg16", "3.0") is None
    assert cfg.model_settings("nosuch", None) is None
    with pytest.raises(TypeError):
        cfg.models["x"] = {}  # type: ignore[index]


def test_model_settings_without_default_version_and_several_versions(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, 'models={"m": {"1.0": {"batchSize": 2}, "2.0": {"batchSize": 3}}}\n')
    assert cfg.model_settings("m", None) is None
    single = load_text(tmp_path, 'models={"m": {"1.0": {"batchSize": 2}}}\n')
    assert single.model_settings("m", None) == ModelSettings(batch_size=2)


@pytest.mark.parametrize(
    ("models", "expected"),
    [
        ('{"noop": ', "expected a JSON object"),
        ("[]", "expected a JSON object"),
        ('{"noop": 1}', "model 'noop'"),
        ('{"noop": {"1.0": []}}', "model 'noop' version '1.0'"),
        ('{"noop": {"1.0": {"minWorkers": "1"}}}', "minWorkers must be a whole number"),
        ('{"noop": {"1.0": {"minWorkers": true}}}', "minWorkers must be a whole number"),
        ('{"noop": {"1.0": {"batchSize": -1}}}', "batchSize must be a whole number from 0"),
        ('{"noop": {"1.0": {"defaultVersion": "yes"}}}', "defaultVersion must be true or false"),
        ('{"noop": {"1.0": {"deviceType": "tpu"}}}', "deviceType must be one of cpu, gpu"),
        ('{"noop": {"1.0": {"deviceIds": [0, "1"]}}}', "deviceIds must be a list"),
        ('{"noop": {"1.0": {"marName": "../../etc/x.mar"}}}', "marName must name a file inside"),
        ('{"noop": {"1.0": {"marName": "/abs/x.mar"}}}', "marName must name a file inside"),
        (
            '{"noop": {"1.0": {"minWorkers": 3, "maxWorkers": 2}}}',
            "maxWorkers \\(2\\) is less than minWorkers",
        ),
        ('{"noop": {"1.0": {"torchrun": 4}}}', "torchrun must be an object"),
        ("[" * 100_000, "expected a JSON object"),
    ],
)
def test_invalid_models_json(tmp_path: Path, models: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=re.compile(r"Invalid value for models \(from file .*" + expected)):
        load_text(tmp_path, f"models={models}\n")


def test_models_json_unknown_keys_and_zeros_warn(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "emberserve.config"):
        cfg = load_text(tmp_path, 'models={"m": {"1.0": {"minWorker": 1, "maxBatchDelay": 0}}}\n')
    assert cfg.models["m"]["1.0"] == ModelSettings()
    assert "unknown setting 'minWorker'" in caplog.text
    assert "did you mean 'minWorkers'" in caplog.text
    assert "maxBatchDelay=0 is ignored" in caplog.text


def test_models_json_workers_above_the_cap_refuse_startup(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="asks for 100 workers, more than max_workers_per_model=64"):
        load_text(tmp_path, 'models={"m": {"1.0": {"minWorkers": 1, "maxWorkers": 100}}}\n')
    cfg = load_text(tmp_path, 'max_workers_per_model=100\nmodels={"m": {"1.0": {"maxWorkers": 100}}}\n')
    assert cfg.models["m"]["1.0"].max_workers == 100


# -- unknown and ignored keys -------------------------------------------------------------------------------


def test_unknown_key_warns_with_closest_known_key(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "emberserve.config"):
        cfg = load_text(
            tmp_path, "job_queue_sise=5\nInference_Address=http://127.0.0.1:1\nzzz_totally_new=1\n"
        )
    assert cfg.job_queue_size == 100
    assert "Unknown key 'job_queue_sise'" in caplog.text
    assert "did you mean 'job_queue_size'" in caplog.text
    assert "did you mean 'inference_address'" in caplog.text
    assert re.search(r"Unknown key 'zzz_totally_new' \(from file [^)]*\) is ignored\n", caplog.text + "\n")


def test_async_logging_is_a_real_switch(tmp_path: Path) -> None:
    assert load_text(tmp_path, "async_logging=true\n").async_logging is True
    assert load_text(tmp_path, "").async_logging is False


def test_jvm_and_netty_keys_are_accepted_and_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    text = (
        "vmargs=-Xmx128m -XX:-UseContainerSupport\nnumber_of_netty_threads=abc\n"
        "netty_client_threads=4\nprefer_direct_buffer=true\n"
    )
    with caplog.at_level(logging.INFO, "emberserve.config"):
        cfg = load_text(tmp_path, text)
    assert cfg.vmargs == "-Xmx128m -XX:-UseContainerSupport"
    assert cfg.number_of_netty_threads == "abc"  # never validated, never rejected
    ignored = [r for r in caplog.records if "has no effect in Ember" in r.getMessage()]
    assert sorted(r.getMessage().split()[0] for r in ignored) == [
        "netty_client_threads",
        "number_of_netty_threads",
        "prefer_direct_buffer",
        "vmargs",
    ]
    assert all(r.levelno == logging.INFO for r in ignored)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and "Unknown key" in r.getMessage()]


# -- derived values ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "cpus", "gpus", "workers", "number_of_gpu"),
    [
        ("", 4, 0, 4, 0),  # CPUs when no GPU
        ("", 4, 2, 2, 2),  # GPUs first
        ("number_of_gpu=1\n", 4, 2, 1, 1),  # number_of_gpu limits the GPUs used
        ("number_of_gpu=0\n", 4, 2, 4, 0),
        ("number_of_gpu=8\n", 4, 2, 2, 2),  # never more than present
        ("default_workers_per_model=3\n", 4, 2, 3, 2),
        ("default_workers_per_model=0\n", 4, 0, 4, 0),  # 0 = automatic
        ("default_workers_per_model=3\ndebug=true\n", 4, 0, 1, 0),  # TorchServe's debug mode
        ("", 200, 0, 64, 0),  # capped at max_workers_per_model
    ],
)
def test_default_workers_per_model(
    tmp_path: Path, text: str, cpus: int, gpus: int, workers: int, number_of_gpu: int
) -> None:
    cfg = load_text(tmp_path, text, cpu_count=cpus, gpu_count=gpus)
    assert (cfg.default_workers_per_model, cfg.number_of_gpu) == (workers, number_of_gpu)


def test_configured_default_workers_above_the_cap_refuse_startup(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match="default_workers_per_model=65 is more than max_workers_per_model=64"
    ):
        load_text(tmp_path, "default_workers_per_model=65\n")
    cfg = load_text(tmp_path, "default_workers_per_model=3\n")
    assert cfg.configured_default_workers_per_model == 3


def test_detect_gpu_count(tmp_path: Path) -> None:
    for name in ("nvidia0", "nvidia1", "nvidia2", "nvidiactl", "nvidia-uvm", "null"):
        (tmp_path / name).touch()
    assert detect_gpu_count({}, tmp_path) == 3
    assert detect_gpu_count({"CUDA_VISIBLE_DEVICES": "2,0"}, tmp_path) == 2
    assert detect_gpu_count({"CUDA_VISIBLE_DEVICES": "0,7,1"}, tmp_path) == 1  # stops at the bad one
    assert detect_gpu_count({"CUDA_VISIBLE_DEVICES": ""}, tmp_path) == 0
    assert detect_gpu_count({"CUDA_VISIBLE_DEVICES": "-1"}, tmp_path) == 0
    assert detect_gpu_count({}, tmp_path / "absent") == 0


# -- what other modules call --------------------------------------------------------------------------------


def test_non_default_settings_lists_sources_and_masks_secrets(tmp_path: Path) -> None:
    (tmp_path / "store").mkdir()
    cfg = load_text(
        tmp_path,
        "keystore_pass=s3cret\njob_queue_size=5\nenable_model_api=true\n"
        "inference_address=http://127.0.0.1:1234\nload_models=a.mar,b=b.mar\n",
        cli=CliOptions(model_store="store"),
    )
    rows = {key: (value, source) for key, value, source in cfg.non_default_settings()}
    source = f"file {(tmp_path / 'config.properties').resolve()}"
    assert rows["keystore_pass"] == ("****", source)
    assert rows["job_queue_size"] == ("5", source)
    assert rows["enable_model_api"] == ("true", source)
    assert rows["inference_address"] == ("http://127.0.0.1:1234", source)
    assert rows["load_models"] == ("a.mar,b=b.mar", source)
    assert rows["model_store"] == (str((tmp_path / "store").resolve()), "cli --model-store")
    assert "management_address" not in rows
    assert all("s3cret" not in value for value, _ in rows.values())


def test_worker_environment(tmp_path: Path) -> None:
    environ = {"HOME": "/home/u", "AWS_SECRET_ACCESS_KEY": "k", "COPY": "pw=s3cret", "TS_KEYSTORE_PASS": "x"}
    cfg = load_text(
        tmp_path,
        "blacklist_env_vars=AWS_.*\nkeystore_pass=s3cret\ndecode_input_request=false\nipex_enable=true\n",
        environ=environ,
    )
    env = cfg.worker_environment()
    assert env["HOME"] == "/home/u"
    assert "AWS_SECRET_ACCESS_KEY" not in env
    assert "COPY" not in env
    assert "TS_KEYSTORE_PASS" not in env
    assert env["TS_DECODE_INPUT_REQUEST"] == "false"
    assert (env["TS_IPEX_ENABLE"], env["TS_IPEX_GPU_ENABLE"]) == ("true", "false")


def test_archive_limits(tmp_path: Path) -> None:
    cfg = load_text(
        tmp_path,
        "max_archive_entries=10\nmax_archive_bytes=5000000000\nmax_manifest_bytes=100\nmax_model_config_bytes=200\n",
    )
    assert cfg.archive_limits() == ArchiveLimits(
        max_entries=10, max_total_bytes=5_000_000_000, max_manifest_bytes=100, max_model_config_bytes=200
    )
    assert ServerConfig().archive_limits() == ArchiveLimits()


def test_ember_only_keys(tmp_path: Path) -> None:
    cfg = load_text(
        tmp_path,
        "drain_timeout=0\nbatching_mode=STRICT\nbatch_size=4\nmax_batch_delay=0\n"
        "restart_backoff_base_ms=10\nmax_restart_backoff_s=0.5\nmax_workers_per_model=8\n",
    )
    assert (cfg.drain_timeout, cfg.batching_mode, cfg.batch_size, cfg.max_batch_delay) == (0, "strict", 4, 0)
    assert (cfg.restart_backoff_base_ms, cfg.max_restart_backoff_s, cfg.max_workers_per_model) == (10, 0.5, 8)
