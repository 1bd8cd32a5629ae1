"""Where each setting comes from: config file lookup, file < CLI < TS_* environment, special variables.

Every row of the precedence tables in ``emberserve.config``'s docstring has a test here, with real
files in ``tmp_path`` and explicit ``environ`` dicts (never the process environment).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import pytest

from emberserve.config import CliOptions, ServerConfig, load_config
from emberserve.errors import ConfigError


def load(
    cwd: Path, cli: CliOptions | None = None, environ: Mapping[str, str] | None = None, **kwargs: int
) -> ServerConfig:
    return load_config(
        cli or CliOptions(), environ or {}, cwd, cpu_count=kwargs.get("cpu_count", 3), gpu_count=0
    )


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# -- which file is read -------------------------------------------------------------------------------


def test_no_file_anywhere_gives_builtin_defaults(tmp_path: Path) -> None:
    cfg = load(tmp_path)
    assert cfg.source_file is None
    assert cfg.job_queue_size == 100
    assert set(cfg.sources.values()) == {"default"}


def test_config_properties_in_cwd_is_read(tmp_path: Path) -> None:
    path = write(tmp_path / "config.properties", "job_queue_size=7\n")
    cfg = load(tmp_path)
    assert cfg.source_file == path.resolve()
    assert cfg.job_queue_size == 7
    assert cfg.sources["job_queue_size"] == f"file {path.resolve()}"


def test_ts_config_flag_beats_cwd_file(tmp_path: Path) -> None:
    write(tmp_path / "config.properties", "job_queue_size=7\n")
    named = write(tmp_path / "conf" / "named.properties", "job_queue_size=8\n")
    cfg = load(tmp_path, CliOptions(ts_config="conf/named.properties"))
    assert cfg.source_file == named.resolve()
    assert cfg.job_queue_size == 8


def test_ts_config_file_env_beats_ts_config_flag(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # TorchServe's launcher and ConfigManager read TS_CONFIG_FILE first.
    write(tmp_path / "config.properties", "job_queue_size=7\n")
    write(tmp_path / "flag.properties", "job_queue_size=8\n")
    from_env = write(tmp_path / "env.properties", "job_queue_size=9\n")
    with caplog.at_level(logging.WARNING, "emberserve.config"):
        cfg = load(tmp_path, CliOptions(ts_config="flag.properties"), {"TS_CONFIG_FILE": str(from_env)})
    assert cfg.source_file == from_env.resolve()
    assert cfg.job_queue_size == 9
    assert "TS_CONFIG_FILE" in caplog.text
    assert "--ts-config" in caplog.text


def test_ts_config_file_env_beats_cwd_file(tmp_path: Path) -> None:
    write(tmp_path / "config.properties", "job_queue_size=7\n")
    write(tmp_path / "env.properties", "job_queue_size=9\n")
    assert load(tmp_path, environ={"TS_CONFIG_FILE": "env.properties"}).job_queue_size == 9


def test_empty_ts_config_file_env_counts_as_unset(tmp_path: Path) -> None:
    write(tmp_path / "config.properties", "job_queue_size=7\n")
    assert load(tmp_path, environ={"TS_CONFIG_FILE": ""}).job_queue_size == 7


@pytest.mark.parametrize(
    ("cli", "environ", "named"),
    [
        (CliOptions(ts_config="missing.properties"), {}, "--ts-config"),
        (CliOptions(), {"TS_CONFIG_FILE": "missing.properties"}, "TS_CONFIG_FILE"),
    ],
)
def test_named_file_that_does_not_exist_is_an_error(
    tmp_path: Path, cli: CliOptions, environ: dict[str, str], named: str
) -> None:
    write(tmp_path / "config.properties", "job_queue_size=7\n")  # no silent fallback to it
    with pytest.raises(ConfigError, match=f"{named} file not found: .*missing.properties"):
        load(tmp_path, cli, environ)


def test_named_directory_is_not_a_file(tmp_path: Path) -> None:
    (tmp_path / "dir.properties").mkdir()
    with pytest.raises(ConfigError, match="not found"):
        load(tmp_path, CliOptions(ts_config="dir.properties"))


# -- file < CLI ------------------------------------------------------------------------------------------


def test_cli_model_store_overrides_file(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    write(tmp_path / "config.properties", "model_store=a\n")
    assert load(tmp_path).model_store == (tmp_path / "a").resolve()
    cfg = load(tmp_path, CliOptions(model_store="b"))
    assert cfg.model_store == (tmp_path / "b").resolve()
    assert cfg.sources["model_store"] == "cli --model-store"


def test_cli_models_override_load_models(tmp_path: Path) -> None:
    write(tmp_path / "config.properties", "load_models=x.mar\n")
    cfg = load(tmp_path, CliOptions(models=("digits=digits.mar", "echo.mar")))
    assert cfg.load_models == ("digits=digits.mar", "echo.mar")
    assert cfg.sources["load_models"] == "cli --models"
    assert load(tmp_path, CliOptions(models=("ALL",))).load_models == ("all",)


def test_cli_workflow_store_overrides_file_and_defaults_to_model_store(tmp_path: Path) -> None:
    for name in ("models", "wf_file", "wf_cli"):
        (tmp_path / name).mkdir()
    write(tmp_path / "config.properties", "model_store=models\n")
    assert load(tmp_path).workflow_store == (tmp_path / "models").resolve()
    write(tmp_path / "config.properties", "model_store=models\nworkflow_store=wf_file\n")
    assert load(tmp_path).workflow_store == (tmp_path / "wf_file").resolve()
    cfg = load(tmp_path, CliOptions(workflow_store="wf_cli"))
    assert cfg.workflow_store == (tmp_path / "wf_cli").resolve()
    assert cfg.sources["workflow_store"] == "cli --workflow-store"


def test_cli_token_and_model_api_flags_override_file(tmp_path: Path) -> None:
    write(tmp_path / "config.properties", "disable_token_authorization=false\nenable_model_api=false\n")
    cfg = load(tmp_path, CliOptions(disable_token_auth=True, enable_model_api=True))
    assert cfg.disable_token_authorization is True
    assert cfg.enable_model_api is True
    assert cfg.sources["enable_model_api"] == "cli --enable-model-api"
    assert cfg.sources["disable_token_authorization"] == "cli --disable-token-auth"


def test_absent_cli_flags_leave_file_values(tmp_path: Path) -> None:
    # TorchServe's flags can only switch these on; without them the file decides.
    write(tmp_path / "config.properties", "disable_token_authorization=true\nenable_model_api=true\n")
    cfg = load(tmp_path, CliOptions())
    assert cfg.disable_token_authorization is True
    assert cfg.enable_model_api is True


def test_ncs_disables_snapshots(tmp_path: Path) -> None:
    assert load(tmp_path).snapshots_enabled is True
    cfg = load(tmp_path, CliOptions(no_config_snapshots=True))
    assert cfg.snapshots_enabled is False
    assert cfg.sources["snapshots_enabled"] == "cli --ncs"


def test_log_config_flag(tmp_path: Path) -> None:
    log_cfg = write(tmp_path / "log.yaml", "version: 1\n")
    assert load(tmp_path, CliOptions(log_config="log.yaml")).log_config == log_cfg.resolve()
    with pytest.raises(ConfigError, match="--log-config file not found"):
        load(tmp_path, CliOptions(log_config="nope.yaml"))


# -- TS_* environment --------------------------------------------------------------------------------------


def test_env_ignored_without_enable_envvars_config(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write(tmp_path / "config.properties", "job_queue_size=7\n")
    with caplog.at_level(logging.INFO, "emberserve.config"):
        cfg = load(tmp_path, environ={"TS_JOB_QUEUE_SIZE": "9"})
    assert cfg.job_queue_size == 7
    assert "TS_JOB_QUEUE_SIZE" in caplog.text
    assert "enable_envvars_config" in caplog.text


def test_env_ignored_when_enable_envvars_config_false(tmp_path: Path) -> None:
    write(tmp_path / "config.properties", "enable_envvars_config=false\njob_queue_size=7\n")
    assert load(tmp_path, environ={"TS_JOB_QUEUE_SIZE": "9"}).job_queue_size == 7


def test_env_overrides_file_with_enable_envvars_config(tmp_path: Path) -> None:
    write(tmp_path / "config.properties", "enable_envvars_config=TRUE\njob_queue_size=7\n")
    cfg = load(tmp_path, environ={"TS_JOB_QUEUE_SIZE": "9", "TS_INFERENCE_ADDRESS": "http://127.0.0.1:9999"})
    assert cfg.job_queue_size == 9
    assert cfg.inference_address.port == 9999
    assert cfg.sources["job_queue_size"] == "env TS_JOB_QUEUE_SIZE"


def test_env_overrides_cli_like_torchserve(tmp_path: Path) -> None:
    # ConfigManager applies the CLI before setSystemVars(), so TS_MODEL_STORE wins over --model-store.
    (tmp_path / "cli_store").mkdir()
    (tmp_path / "env_store").mkdir()
    write(tmp_path / "config.properties", "enable_envvars_config=true\n")
    cfg = load(
        tmp_path,
        CliOptions(model_store="cli_store", enable_model_api=True),
        {"TS_MODEL_STORE": str(tmp_path / "env_store"), "TS_ENABLE_MODEL_API": "false"},
    )
    assert cfg.model_store == (tmp_path / "env_store").resolve()
    assert cfg.enable_model_api is False
    assert cfg.sources["model_store"] == "env TS_MODEL_STORE"


def test_enable_envvars_config_itself_cannot_come_from_env(tmp_path: Path) -> None:
    cfg = load(tmp_path, environ={"TS_ENABLE_ENVVARS_CONFIG": "true", "TS_JOB_QUEUE_SIZE": "9"})
    assert cfg.job_queue_size == 100


def test_token_expiration_uses_torchserve_variable_name(tmp_path: Path) -> None:
    write(tmp_path / "config.properties", "enable_envvars_config=true\n")
    cfg = load(tmp_path, environ={"TS_TOKEN_EXPIRATION_TIME_MIN": "5", "TS_TOKEN_EXPIRATION_MIN": "7"})
    assert cfg.token_expiration_min == 5


def test_keys_without_env_variable_are_file_only(tmp_path: Path) -> None:
    write(tmp_path / "config.properties", "enable_envvars_config=true\n")
    cfg = load(tmp_path, environ={"TS_METRIC_TIME_INTERVAL": "5", "TS_MODELS": '{"a": {"1": {}}}'})
    assert cfg.metric_time_interval == 60
    assert dict(cfg.models) == {}


def test_env_allowed_urls_need_use_env_allowed_urls(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write(tmp_path / "config.properties", "enable_envvars_config=true\nallowed_urls=https://ok/.*\n")
    environ = {"TS_ALLOWED_URLS": "file://.*"}
    with caplog.at_level(logging.WARNING, "emberserve.config"):
        assert load(tmp_path, environ=environ).allowed_urls == ("https://ok/.*",)
    assert "use_env_allowed_urls" in caplog.text
    write(
        tmp_path / "config.properties",
        "enable_envvars_config=true\nuse_env_allowed_urls=true\nallowed_urls=https://ok/.*\n",
    )
    assert load(tmp_path, environ=environ).allowed_urls == ("file://.*",)


def test_use_env_allowed_urls_cannot_come_from_env(tmp_path: Path) -> None:
    write(tmp_path / "config.properties", "enable_envvars_config=true\nallowed_urls=https://ok/.*\n")
    environ = {"TS_ALLOWED_URLS": "file://.*", "TS_USE_ENV_ALLOWED_URLS": "true"}
    assert load(tmp_path, environ=environ).allowed_urls == ("https://ok/.*",)


def test_invalid_env_value_names_the_variable(tmp_path: Path) -> None:
    write(tmp_path / "config.properties", "enable_envvars_config=true\n")
    with pytest.raises(ConfigError, match=r"job_queue_size \(from env TS_JOB_QUEUE_SIZE\): 'lots'"):
        load(tmp_path, environ={"TS_JOB_QUEUE_SIZE": "lots"})


def test_ember_only_keys_follow_the_same_env_rule(tmp_path: Path) -> None:
    assert load(tmp_path, environ={"TS_DRAIN_TIMEOUT": "3"}).drain_timeout == 30
    write(tmp_path / "config.properties", "enable_envvars_config=true\n")
    assert load(tmp_path, environ={"TS_DRAIN_TIMEOUT": "3"}).drain_timeout == 3


# -- always-read environment -------------------------------------------------------------------------------


def test_log_and_metrics_location(tmp_path: Path) -> None:
    cfg = load(tmp_path)
    assert cfg.log_location == tmp_path / "logs"
    assert cfg.metrics_location == tmp_path / "logs"
    assert cfg.snapshot_dir == tmp_path / "logs" / "config"
    cfg = load(tmp_path, environ={"LOG_LOCATION": "run/logs", "METRICS_LOCATION": str(tmp_path / "m")})
    assert cfg.log_location == (tmp_path / "run" / "logs").resolve()
    assert cfg.metrics_location == (tmp_path / "m").resolve()
    assert cfg.sources["log_location"] == "env LOG_LOCATION"


@pytest.mark.parametrize(("value", "expected"), [("oip", True), ("other", False), ("", False)])
def test_open_inference_protocol_env_is_always_read(tmp_path: Path, value: str, expected: bool) -> None:
    write(tmp_path / "config.properties", "ts_open_inference_protocol=false\n")
    assert (
        load(tmp_path, environ={"TS_OPEN_INFERENCE_PROTOCOL": value}).ts_open_inference_protocol is expected
    )


def test_open_inference_protocol_env_beats_file_true(tmp_path: Path) -> None:
    write(tmp_path / "config.properties", "enable_envvars_config=true\nts_open_inference_protocol=true\n")
    cfg = load(tmp_path, environ={"TS_OPEN_INFERENCE_PROTOCOL": "kserve"})
    assert cfg.ts_open_inference_protocol is False
    assert cfg.sources["ts_open_inference_protocol"] == "env TS_OPEN_INFERENCE_PROTOCOL"


def test_dollar_references_in_file_read_the_environment(tmp_path: Path) -> None:
    # TorchServe's resolveEnvVarVals: $$NAME$$ is replaced whether or not envvars config is on.
    (tmp_path / "store").mkdir()
    write(
        tmp_path / "config.properties", "model_store=$$BASE$$/store\ncors_allowed_origin=https://$$HOST$$\n"
    )
    cfg = load(tmp_path, environ={"BASE": str(tmp_path), "HOST": "example.com"})
    assert cfg.model_store == (tmp_path / "store").resolve()
    assert cfg.cors_allowed_origin == "https://example.com"
    write(tmp_path / "config.properties", "cors_allowed_origin=$$MISSING$$\n")
    with pytest.raises(ConfigError, match=r"\$\$MISSING\$\$.*MISSING is not set"):
        load(tmp_path)


def test_default_workers_source_distinguishes_configured(tmp_path: Path) -> None:
    assert load(tmp_path).sources["default_workers_per_model"] == "default"
    write(tmp_path / "config.properties", "default_workers_per_model=2\n")
    assert load(tmp_path).sources["default_workers_per_model"].startswith("file ")
