"""Offline checks of the Helm chart (deploy/helm/ember) and the KServe manifests (deploy/kserve).

Nothing here needs helm, kubectl, a cluster or a network:

- tests/helm_render.py renders the chart as Helm 3 does, and refuses whatever it does not
  implement, so a template that Helm would render differently cannot pass here;
- every rendered object is validated against the OpenAPI schemas that the kubernetes-validate
  package ships, in strict mode (an unknown field is an error), for Kubernetes 1.30 (the oldest
  version the chart supports) and for the newest version the package has; an apiVersion that a
  version no longer serves has no schema there and fails, and only GA apiVersions are accepted;
- objects of custom resources (prometheus-operator's ServiceMonitor, KServe's
  ClusterServingRuntime and InferenceService) have no schema in kubernetes-validate: they are
  validated against JSON schemas written below from their projects' API references, closed
  (unknown fields are errors), whose embedded Kubernetes types (Container, ObjectMeta, ...) are
  references into kubernetes-validate's strict definitions, so those parts are checked as fully
  as a Deployment's.
"""

from __future__ import annotations

import ast
import copy
import functools
import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import javaproperties
import jsonschema
import kubernetes_validate
import pytest
from kubernetes_validate.utils import all_versions, major_minor, schema_contents
from referencing import Registry, Resource

from emberserve.config_keys import KEYS
from tests.helm_render import (
    GoStruct,
    TemplateError,
    TemplateSet,
    Unsupported,
    load_yaml_documents,
    normalise_values,
    render_chart,
    to_yaml,
)

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "ember"
KSERVE = REPO / "deploy" / "kserve"

#: The oldest Kubernetes the chart supports, and the newest kubernetes-validate knows.
K8S_VERSIONS = ("1.30", major_minor(all_versions()[-1]))

#: GA apiVersions only: a beta or deprecated version of these kinds is refused even where served.
STABLE_APIS = {
    ("v1", "ConfigMap"),
    ("v1", "Service"),
    ("apps/v1", "Deployment"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("policy/v1", "PodDisruptionBudget"),
}
CUSTOM_APIS = {("monitoring.coreos.com/v1", "ServiceMonitor")}

SERVICE_PORTS = {
    "http-inference": 8080,
    "http-management": 8081,
    "http-metrics": 8082,
    "grpc-inference": 7070,
    "grpc-management": 7071,
}
HOME = "/home/model-server"
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


# -- Kubernetes schemas (kubernetes-validate), loaded once ---------------------------------------------


def _schema_dir(version: str) -> str:
    full = [v for v in all_versions() if major_minor(v) == version]
    assert full, f"kubernetes-validate {kubernetes_validate.__version__} has no schemas for {version}"
    return f"kubernetes-json-schema/v{full[-1]}-local-strict"


@functools.cache
def _definitions(version: str) -> dict[str, Any]:
    return schema_contents(f"{_schema_dir(version)}/_definitions.json", version)


@functools.cache
def _registry(version: str) -> Registry:
    return Resource.from_contents(_definitions(version)) @ Registry()


@functools.cache
def _k8s_validator(version: str, api_version: str, kind: str) -> jsonschema.Validator:
    """kubernetes_validate.validate(strict=True), with the 1 MB definitions parsed once per version."""
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    try:
        schema = schema_contents(f"{_schema_dir(version)}/{kind.lower()}-{group_version}.json", version)
    except FileNotFoundError:
        raise kubernetes_validate.SchemaNotFoundError(kind, version, api_version) from None
    registry = Resource.from_contents(schema) @ _registry(version)
    return jsonschema.Draft202012Validator(schema, registry=registry)


def validate_k8s(obj: dict[str, Any], version: str) -> None:
    _k8s_validator(version, obj["apiVersion"], obj["kind"]).validate(obj)


K8S_DEFS = "https://kubernetes.io/api/_definitions.json#/$defs/"


def k8s(definition: str) -> dict[str, Any]:
    return {"$ref": K8S_DEFS + definition}


def _validate_custom(obj: dict[str, Any], schema: dict[str, Any], version: str = "1.30") -> None:
    jsonschema.Draft202012Validator(schema, registry=_registry(version)).validate(obj)


def _walk(value: Any, path: str = "") -> list[tuple[str, Any]]:
    out = [(path, value)]
    if isinstance(value, dict):
        for key, item in value.items():
            out += _walk(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out += _walk(item, f"{path}[{i}]")
    return out


def _check_object(obj: dict[str, Any], version: str) -> None:
    """What every rendered object must satisfy, beyond its schema."""
    nulls = [path for path, value in _walk(obj) if value is None]
    assert not nulls, f"{obj['kind']}: null values (a missing value rendered empty?): {nulls}"
    name = obj["metadata"]["name"]
    assert len(name) <= 63 and DNS_LABEL.fullmatch(name), name
    pair = (obj["apiVersion"], obj["kind"])
    if pair in CUSTOM_APIS:
        _validate_custom(obj, SERVICE_MONITOR_SCHEMA, version)
    else:
        assert pair in STABLE_APIS, f"{pair} is not a GA API this chart may use"
        validate_k8s(obj, version)


# -- the chart ---------------------------------------------------------------------------------------------

SCENARIOS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "pvc": {
        "modelStore": {
            "source": "pvc",
            "pvc": {"claimName": "ember-models", "subPath": "archives", "readOnly": True},
        }
    },
    "download": {
        "modelStore": {
            "source": "download",
            "download": {
                "urls": ["https://models.example.com/digits.mar", "https://models.example.com/echo.mar"]
            },
        }
    },
    "servicemonitor": {
        "metrics": {
            "podAnnotations": False,
            "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
        }
    },
    "no-hpa": {
        "autoscaling": {"enabled": False},
        "replicaCount": 3,
        "podDisruptionBudget": {"minAvailable": "50%", "maxUnavailable": None},
        "preStopSleepSeconds": 0,
    },
    "custom": {
        "fullnameOverride": "ember-gpu",
        "image": {"repository": "registry.example.com/ml/emberserve", "tag": "0.1.0-cuda"},
        "resources": {
            "requests": {"cpu": "500m", "memory": "3Gi", "nvidia.com/gpu": 1},
            "limits": {"cpu": 4, "memory": "6Gi", "nvidia.com/gpu": 1},
        },
        "nodeSelector": {"nvidia.com/gpu.present": "true"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "extraEnv": [{"name": "TS_NUMBER_OF_GPU", "value": "1"}],
        "config": {
            "drainTimeout": 120,
            "jobQueueSize": 1000000,
            "serviceEnvelope": "kservev2",
            "extra": {"max_batch_delay": "50", "batch_size": "8"},
            "tokenKeysSecret": "ember-keys",
        },
        "terminationGracePeriodSeconds": 150,
        "podAnnotations": {"team": "ml-platform"},
        "service": {"annotations": {"example.com/owner": "ml-platform"}},
    },
}


@functools.cache
def _render(scenario: str, release: str = "ember", namespace: str = "default") -> Any:
    return render_chart(CHART, SCENARIOS[scenario], release_name=release, namespace=namespace)


def render(scenario: str = "defaults", **kw: str) -> Any:
    return copy.deepcopy(_render(scenario, **kw))


def _container(deployment: dict[str, Any], name: str = "ember") -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == name)


def _properties(chart: Any) -> dict[str, str]:
    text = chart.one("ConfigMap")["data"]["config.properties"]
    return dict(javaproperties.loads(text))


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_rendered_object_validates(scenario: str, version: str) -> None:
    chart = render(scenario)
    kinds = chart.kinds()
    assert {"ConfigMap", "Deployment", "Service"} <= set(kinds)
    assert len(kinds) == len(set(kinds)), kinds
    for obj in chart.objects:
        _check_object(obj, version)


def test_scenarios_render_the_expected_kinds() -> None:
    assert sorted(render().kinds()) == [
        "ConfigMap",
        "Deployment",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Service",
    ]
    assert "ServiceMonitor" in render("servicemonitor").kinds()
    assert "HorizontalPodAutoscaler" not in render("no-hpa").kinds()
    disabled = render_chart(CHART, {"podDisruptionBudget": {"enabled": False}})
    assert "PodDisruptionBudget" not in disabled.kinds()


def test_validation_catches_unknown_fields_and_removed_apis() -> None:
    deployment = render().one("Deployment")
    _container(deployment)["livenessProbe"]["httpGet"]["paht"] = "/typo"
    with pytest.raises(jsonschema.ValidationError, match="paht"):
        validate_k8s(deployment, "1.30")
    # kubernetes_validate itself agrees with the cached validator above.
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, "1.30", strict=True)
    assert kubernetes_validate.validate(render().one("Deployment"), "1.30", strict=True) == "1.30"
    pdb = render().one("PodDisruptionBudget")
    hpa = render().one("HorizontalPodAutoscaler")
    for obj, old in ((pdb, "policy/v1beta1"), (hpa, "autoscaling/v2beta2")):
        with pytest.raises(kubernetes_validate.SchemaNotFoundError):
            validate_k8s({**obj, "apiVersion": old}, "1.30")
    with pytest.raises(AssertionError, match="not a GA API"):
        _check_object({**render().one("Service"), "apiVersion": "v1beta1"}, "1.30")
    service_monitor = render("servicemonitor").one("ServiceMonitor")
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        validate_k8s(service_monitor, "1.30")


def test_deployment_probes_ports_image_and_grace() -> None:
    chart = render()
    deployment = chart.one("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = _container(deployment)
    assert container["image"] == "localhost/emberserve:0.1.0"
    assert container["args"] == ["serve"]
    assert "command" not in container  # the image's entrypoint stays in charge
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == SERVICE_PORTS

    def probe(name: str) -> tuple[str, int]:
        http = container[name]["httpGet"]
        return http["path"], ports[http["port"]]

    assert probe("startupProbe") == ("/ping", 8080)
    assert probe("readinessProbe") == ("/ping", 8080)
    assert probe("livenessProbe") == ("/v2/health/live", 8080)
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300  # time to load models

    drain = int(_properties(chart)["drain_timeout"])
    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
    assert pod["terminationGracePeriodSeconds"] >= pre_stop + drain + 15
    assert "replicas" not in deployment["spec"]  # the HPA owns it
    assert render("no-hpa").one("Deployment")["spec"]["replicas"] == 3
    assert "lifecycle" not in _container(render("no-hpa").one("Deployment"))


def test_pod_and_container_security() -> None:
    deployment = render("download").one("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 1000
    assert pod["securityContext"]["fsGroup"] == 1000
    assert pod["automountServiceAccountToken"] is False
    for container in pod["containers"] + pod["initContainers"]:
        context = container["securityContext"]
        assert context["runAsNonRoot"] is True
        assert context["runAsUser"] == 1000
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}


def test_config_properties_has_the_contract_keys_and_ember_accepts_them() -> None:
    chart = render()
    props = _properties(chart)
    expected = {
        "inference_address": "http://0.0.0.0:8080",
        "management_address": "http://0.0.0.0:8081",
        "metrics_address": "http://0.0.0.0:8082",
        "grpc_inference_address": "0.0.0.0",
        "grpc_management_address": "0.0.0.0",
        "grpc_inference_port": "7070",
        "grpc_management_port": "7071",
        "model_store": f"{HOME}/model-store",
        "load_models": "all",
        "metrics_mode": "prometheus",
        "metrics_clean_family": "true",
        "enable_envvars_config": "true",
        "ts_open_inference_protocol": "true",
        "drain_timeout": "30",
        "token_auth_exempt_health": "true",
        "disable_token_authorization": "false",
        "default_workers_per_model": "1",
        "job_queue_size": "100",
    }
    assert props == expected
    for scenario in SCENARIOS:
        for key, value in _properties(render(scenario)).items():
            assert key in KEYS, f"{scenario}: Ember does not know {key}"
            KEYS[key].parse(value, Path("/"))  # raises on a value Ember would refuse

    custom = _properties(render("custom"))
    assert custom["service_envelope"] == "kservev2"
    assert custom["job_queue_size"] == "1000000"  # `int`: not Helm's float form 1e+06
    assert custom["drain_timeout"] == "120"
    assert custom["batch_size"] == "8"
    assert custom["max_batch_delay"] == "50"


def test_config_is_mounted_with_subpath_and_rolls_the_pods() -> None:
    deployment = render().one("Deployment")
    mount = next(m for m in _container(deployment)["volumeMounts"] if m["name"] == "config")
    assert mount == {
        "name": "config",
        "mountPath": f"{HOME}/config.properties",
        "subPath": "config.properties",
        "readOnly": True,
    }
    volume = next(v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "config")
    assert volume["configMap"]["name"] == render().one("ConfigMap")["metadata"]["name"]

    def checksum(chart: Any) -> str:
        return chart.one("Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    assert re.fullmatch("[0-9a-f]{64}", checksum(render()))
    assert checksum(render()) != checksum(render("custom"))


def test_model_store_from_pvc() -> None:
    deployment = render("pvc").one("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "model-store")
    assert volume == {
        "name": "model-store",
        "persistentVolumeClaim": {"claimName": "ember-models", "readOnly": True},
    }
    mount = next(m for m in _container(deployment)["volumeMounts"] if m["name"] == "model-store")
    assert mount == {
        "name": "model-store",
        "mountPath": f"{HOME}/model-store",
        "subPath": "archives",
        "readOnly": True,
    }
    assert "initContainers" not in pod


def test_model_store_downloaded_by_an_init_container() -> None:
    pod = render("download").one("Deployment")["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "model-store")
    assert volume == {"name": "model-store", "emptyDir": {"sizeLimit": "4Gi"}}
    (init,) = pod["initContainers"]
    assert init["image"] == "localhost/emberserve:0.1.0"
    assert init["command"] == ["python3", "/etc/ember/fetch_models.py", f"{HOME}/model-store"]
    assert init["args"] == SCENARIOS["download"]["modelStore"]["download"]["urls"]
    mounts = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}
    assert mounts == {"model-store": f"{HOME}/model-store", "config": "/etc/ember"}
    script = render("download").one("ConfigMap")["data"]["fetch_models.py"]
    assert script == (CHART / "files" / "fetch_models.py").read_text()
    # Without URLs the store is an empty emptyDir and there is nothing to fetch.
    assert "initContainers" not in render().one("Deployment")["spec"]["template"]["spec"]


def test_fetch_models_script(tmp_path: Path) -> None:
    script = CHART / "files" / "fetch_models.py"
    source = tmp_path / "bucket"
    source.mkdir()
    (source / "digits.mar").write_bytes(b"PK\x05\x06" + bytes(18))
    store = tmp_path / "store"

    def run(*urls: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(script), str(store), *urls], capture_output=True, text=True, timeout=30
        )

    url = (source / "digits.mar").as_uri()
    assert run(url).returncode == 0
    assert (store / "digits.mar").read_bytes() == (source / "digits.mar").read_bytes()
    assert sorted(p.name for p in store.iterdir()) == ["digits.mar"]  # no partial file left
    again = run(url)
    assert again.returncode == 0 and "already in the store" in again.stdout
    for bad in ("ftp://example.com/digits.mar", (source / "digits.zip").as_uri(), url + "/.mar"):
        failed = run(bad)
        assert failed.returncode == 1, bad
        assert "fetch_models:" in failed.stderr
    missing = run((source / "nothing.mar").as_uri())
    assert missing.returncode == 1 and "nothing.mar" in missing.stderr
    assert sorted(p.name for p in store.iterdir()) == ["digits.mar"]


def test_service_exposes_the_five_named_ports() -> None:
    chart = render()
    service = chart.one("Service")
    ports = {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]}
    assert ports == {name: (number, name) for name, number in SERVICE_PORTS.items()}
    pod_labels = chart.one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert chart.one("Deployment")["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]


def test_prometheus_pod_annotations_and_service_monitor() -> None:
    annotations = render().one("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "8082"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert "ServiceMonitor" not in render().kinds()

    chart = render("servicemonitor")
    annotations = chart.one("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert not any(key.startswith("prometheus.io/") for key in annotations)
    monitor = chart.one("ServiceMonitor")
    service = chart.one("Service")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["default"]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "http-metrics"
    assert endpoint["path"] == "/metrics"
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    _validate_custom(monitor, SERVICE_MONITOR_SCHEMA)
    broken = copy.deepcopy(monitor)
    broken["spec"]["endpoints"][0]["scrapeInterval"] = "30s"  # the field is "interval"
    with pytest.raises(jsonschema.ValidationError, match="scrapeInterval"):
        _validate_custom(broken, SERVICE_MONITOR_SCHEMA)
    broken = copy.deepcopy(monitor)
    broken["spec"]["endpoints"][0]["interval"] = "30 seconds"
    with pytest.raises(jsonschema.ValidationError):
        _validate_custom(broken, SERVICE_MONITOR_SCHEMA)


def test_hpa_scales_on_the_queue_latency_pods_metric() -> None:
    chart = render()
    hpa = chart.one("HorizontalPodAutoscaler")
    deployment = chart.one("Deployment")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 4)
    (metric,) = hpa["spec"]["metrics"]
    assert metric == {
        "type": "Pods",
        "pods": {
            "metric": {"name": "ember_queue_wait_seconds_per_request"},
            "target": {"type": "AverageValue", "averageValue": "100m"},
        },
    }
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300


def test_the_adapter_rule_is_documented() -> None:
    """The HPA's metric exists only with this prometheus-adapter rule: values.yaml and the README say it."""
    for doc in (CHART / "values.yaml", CHART / "README.md"):
        text = doc.read_text()
        assert "ember_queue_wait_seconds_per_request" in text, doc
        assert "rate(ember_queue_wait_seconds_sum{<<.LabelMatchers>>}[1m])" in text, doc
        assert "rate(ember_queue_wait_seconds_count{<<.LabelMatchers>>}[1m])" in text, doc
        assert "seriesQuery" in text, doc
    # The values.yaml rule, uncommented, is a valid prometheus-adapter rules document.
    lines = (CHART / "values.yaml").read_text().splitlines()
    start = lines.index("#   rules:")
    block = []
    for line in lines[start:]:
        if not line.startswith("#   "):
            break
        block.append(line[4:])
    (rules,) = load_yaml_documents("\n".join(block))
    (rule,) = rules["rules"]
    assert rule["name"]["as"] == "ember_queue_wait_seconds_per_request"
    assert set(rule) == {"seriesQuery", "resources", "name", "metricsQuery"}


def test_pdb() -> None:
    pdb = render().one("PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert "minAvailable" not in pdb["spec"]
    assert pdb["spec"]["selector"] == render().one("Deployment")["spec"]["selector"]
    pdb = render("no-hpa").one("PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == "50%"
    assert "maxUnavailable" not in pdb["spec"]


def test_custom_values() -> None:
    chart = render("custom")
    deployment = chart.one("Deployment")
    assert deployment["metadata"]["name"] == "ember-gpu"
    container = _container(deployment)
    assert container["image"] == "registry.example.com/ml/emberserve:0.1.0-cuda"
    assert container["resources"] == {
        "requests": {"cpu": "500m", "memory": "3Gi", "nvidia.com/gpu": 1},
        "limits": {"cpu": 4, "memory": "6Gi", "nvidia.com/gpu": 1},
    }
    assert container["env"] == [{"name": "TS_NUMBER_OF_GPU", "value": "1"}]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert pod["terminationGracePeriodSeconds"] == 150
    assert deployment["spec"]["template"]["metadata"]["annotations"]["team"] == "ml-platform"
    assert chart.one("Service")["metadata"]["annotations"] == {"example.com/owner": "ml-platform"}
    assert deployment["metadata"]["labels"]["app.kubernetes.io/version"] == "0.1.0-cuda"
    # Shared keys for every replica: the Secret, read-only and owner-only, is Ember's token_keys_file.
    assert _properties(chart)["token_keys_file"] == "/etc/ember-keys/keys.json"
    mount = next(m for m in container["volumeMounts"] if m["name"] == "token-keys")
    assert mount == {"name": "token-keys", "mountPath": "/etc/ember-keys", "readOnly": True}
    volume = next(v for v in pod["volumes"] if v["name"] == "token-keys")
    assert volume["secret"]["secretName"] == "ember-keys" and volume["secret"]["defaultMode"] == 0o400
    assert "token_keys_file" not in _properties(render())


def test_release_name_and_namespace() -> None:
    chart = render("defaults", release="prod", namespace="ml")
    for obj in chart.objects:
        assert obj["metadata"]["name"] == "prod-ember"
        assert obj["metadata"]["namespace"] == "ml"
        assert obj["metadata"]["labels"]["app.kubernetes.io/instance"] == "prod"
    # A release whose name contains the chart's keeps its name.
    assert render("defaults", release="ember-canary").one("Service")["metadata"]["name"] == "ember-canary"
    assert "kubectl -n ml port-forward svc/prod-ember 8080 8081" in chart.notes


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"terminationGracePeriodSeconds": 49},
            r"terminationGracePeriodSeconds \(49\) must be at least .* \(50\)",
        ),
        ({"config": {"drainTimeout": 60}}, r"must be at least .* \(80\)"),
        ({"modelStore": {"source": "pvc"}}, "modelStore.pvc.claimName is required"),
        ({"modelStore": {"source": "s3"}}, 'modelStore.source must be pvc or download, not "s3"'),
        ({"config": {"tokenAuthExemptHealth": False}}, "probes carry no token"),
        ({"autoscaling": {"minReplicas": 5}}, "minReplicas is greater than"),
        ({"podDisruptionBudget": {"minAvailable": 1}}, "not both"),
        ({"podDisruptionBudget": {"maxUnavailable": None}}, "give minAvailable or maxUnavailable"),
    ],
)
def test_values_that_cannot_work_are_refused(values: dict[str, Any], message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        render_chart(CHART, values)


def test_token_auth_off_allows_unexempted_probes() -> None:
    chart = render_chart(
        CHART, {"config": {"disableTokenAuthorization": True, "tokenAuthExemptHealth": False}}
    )
    props = _properties(chart)
    assert props["disable_token_authorization"] == "true"
    assert "key_file.json" not in chart.notes


# -- the renderer: Go template semantics, and refusals ----------------------------------------------------

VALUES = normalise_values(
    {
        "n": 8080,
        "big": 1000000,
        "half": 0.5,
        "s": "text",
        "empty": "",
        "flag": False,
        "list": ["a", "b"],
        "map": {"b": 2, "a": 1},
        "resources": {"limits": {"cpu": "100m", "memory": "128Mi"}, "requests": {"cpu": "100m"}},
    }
)


def run_template(source: str, values: dict[str, Any] | None = None) -> str:
    templates = TemplateSet()
    templates.add("_helpers.tpl", '{{- define "labels" -}}\na: x\nb: y\n{{- end }}')
    top = GoStruct("chartutil.Values", {"Values": VALUES if values is None else values})
    return templates.render_string(source, top)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        # Trim markers: "{{- " eats all whitespace before, " -}}" all after, newlines included.
        ("a  {{- 1 }}  b", "a1  b"),
        ("a {{ 1 -}} \n\n  b", "a 1b"),
        ("{{ 3 -}}\n {{- 4 }}", "34"),
        ("x\n{{- if true }}\ny\n{{- end }}\n", "x\ny\n"),
        ("x\n  {{- /* a comment */}}\ny", "x\ny"),
        ("x\n{{- /* trimmed both sides */ -}}\n  y", "xy"),
        ("{{/* plain comment */}}z", "z"),
        # No space after the dash: "{{-3}}" is the number -3, nothing is trimmed.
        ("a {{-3}}", "a -3"),
        # The include | nindent idiom of every chart.
        ('labels:\n  {{- include "labels" . | nindent 2 }}\n', "labels:\n  a: x\n  b: y\n"),
        ('{{ include "labels" . | indent 4 }}', "    a: x\n    b: y"),
        # Numbers from values are float64: Go prints 1e+06 (a well-known Helm surprise).
        (
            "{{ .Values.n }} {{ .Values.big }} {{ int .Values.big }} {{ .Values.half }}",
            "8080 1e+06 1000000 0.5",
        ),
        ("{{ 1e6 }} {{ 1000000 }} {{ 2.50 }}", "1e+06 1000000 2.5"),
        (
            '{{ .Values.s | quote }} {{ "a\\"b\\n" | quote }} {{ quote .Values.n }}',
            '"text" "a\\"b\\n" "8080"',
        ),
        ('{{ default "d" .Values.empty }} {{ default "d" .Values.flag }} {{ 0 | default 5 }}', "d d 5"),
        ('{{ default "d" .Values.missing }} {{ .Values.s | default "d" }}', "d text"),
        (
            '{{ printf "%s-%d-%v" "a" 3 .Values.n }} {{ printf "%q" "x" }} {{ printf "100%%" }}',
            'a-3-8080 "x" 100%',
        ),
        ('{{ "ember-" | trimSuffix "-" }} {{ trunc 3 "abcdef" }} {{ trunc -2 "abcdef" }}', "ember abc ef"),
        ('{{ contains "mb" "ember" }} {{ contains "x" "ember" }}', "true false"),
        ("{{ range $i, $v := .Values.list }}{{ $i }}={{ $v }},{{ end }}", "0=a,1=b,"),
        ("{{ range $k, $v := .Values.map }}{{ $k }}={{ $v }},{{ end }}", "a=1,b=2,"),
        ("{{ range .Values.list }}[{{ . }}]{{ else }}none{{ end }}", "[a][b]"),
        ("{{ range .Values.missing }}x{{ else }}none{{ end }}", "none"),
        (
            "{{ with .Values.s }}{{ . }}{{ else }}none{{ end }} "
            "{{ with .Values.empty }}x{{ else }}none{{ end }}",
            "text none",
        ),
        ("{{ if .Values.flag }}a{{ else if .Values.s }}b{{ else }}c{{ end }}", "b"),
        ("{{ if and .Values.s .Values.flag }}y{{ else }}n{{ end }}{{ or .Values.empty .Values.s }}", "ntext"),
        ("{{ if not .Values.list }}empty{{ else }}{{ len .Values.list }}{{ end }}", "2"),
        (
            '{{ eq .Values.s "text" }} {{ ne (int .Values.n) 8080 }} {{ lt (int .Values.n) (add 8000 81) }}',
            "true false true",
        ),
        ("{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ $y := 3 }}{{ end }}{{ $x }}", "2"),
        ("{{ $.Values.s }}{{ with .Values.map }}{{ $.Values.s }}{{ .a }}{{ end }}", "texttext1"),
        ("{{ toYaml .Values.resources }}", "limits:\n  cpu: 100m\n  memory: 128Mi\nrequests:\n  cpu: 100m"),
        ('{{ sha256sum "" }}', "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    ],
)
def test_renderer_matches_go_templates(source: str, expected: str) -> None:
    assert run_template(source) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"b": [], "a": {}}, "a: {}\nb: []"),
        ({"list": ["x", {"k": "v", "a": [1, 2]}]}, "list:\n- x\n- a:\n  - 1\n  - 2\n  k: v"),
        (
            {"cpu": "1", "on": "yes", "e": "", "t": True, "f": 0.25, "i": 3.0},
            'cpu: "1"\ne: ""\nf: 0.25\ni: 3\n"on": "yes"\nt: true',
        ),
        # go-yaml's key order: numbers inside keys by value, other runes before letters.
        ({"a10": 1, "a9": 1, "a_b": 1, "aB": 1, "A": 1}, "A: 1\na_b: 1\na9: 1\na10: 1\naB: 1"),
        ({}, "{}"),
        ([], "[]"),
        (None, "null"),
    ],
)
def test_to_yaml_matches_go_yaml(value: Any, expected: str) -> None:
    assert to_yaml(normalise_values(value)) == expected


@pytest.mark.parametrize(
    ("source", "error", "message"),
    [
        ('{{ upper "a" }}', Unsupported, "function 'upper' is not implemented"),
        ('{{ tpl "x" . }}', Unsupported, "function 'tpl'"),
        ('{{ "a" | lower }}', Unsupported, "function 'lower'"),
        ('{{ template "labels" . }}', Unsupported, "template"),
        ('{{ block "x" . }}y{{ end }}', Unsupported, "block"),
        ("{{ range .Values.list }}{{ break }}{{ end }}", Unsupported, "break"),
        ("{{ with .Values.s }}a{{ else with .Values.n }}b{{ end }}", Unsupported, "else with"),
        ('{{ printf "%05d" 3 }}', Unsupported, "printf"),
        ("{{ 'a' }}", Unsupported, "character constants"),
        ("{{ 0x1F }}", Unsupported, "number literal"),
        ("{{ 1_000 }}", Unsupported, "number literal"),
        ("{{ .Capabilities.KubeVersion }}", TemplateError, "Capabilities"),
        ("{{ toYaml .Values.odd }}", Unsupported, "not sure how go-yaml would write"),
        ("{{ .Values.list }}", Unsupported, "printing a"),
        # Helm prints nothing for a missing value; that hides bugs in manifests.
        ("{{ .Values.missing }}", TemplateError, "missing"),
        # What Helm refuses too:
        ("{{ .Values.missing.deeper }}", TemplateError, "nil pointer evaluating"),
        ("{{ eq .Values.n 8080 }}", TemplateError, "incompatible types for comparison"),
        ('{{ nindent .Values.n "x" }}', TemplateError, "expected int; got float64"),
        ('{{ printf "%s" .Values.n }}', TemplateError, "printf"),
        ('{{ required "need it" .Values.empty }}', TemplateError, "need it"),
        ('{{ fail "stop here" }}', TemplateError, "stop here"),
        ('{{ include "nope" . }}', TemplateError, 'no template "nope"'),
        ("{{ if true }}x", TemplateError, "missing {{end}}"),
        ("{{ end }}", TemplateError, "unexpected"),
        ("{{ .Values.s", TemplateError, "unclosed action"),
        ("{{ .Values.s | }}", TemplateError, "missing"),
        ("{{ $nope }}", TemplateError, "undefined variable"),
        # Go checks variables when it parses: a branch that never runs fails all the same.
        ("{{ if false }}{{ $nope }}{{ end }}", TemplateError, "undefined variable '$nope'"),
        ("{{ if true }}{{ $y := 1 }}{{ end }}{{ $y }}", TemplateError, "undefined variable '$y'"),
        ('{{ define "d" }}{{ $x }}{{ end }}{{ $x := 1 }}', TemplateError, "undefined variable '$x'"),
        ('{{ .Values.s "arg" }}', TemplateError, "can't give argument to non-function"),
        ('{{ if true }}{{ define "x" }}{{ end }}{{ end }}', TemplateError, "define"),
    ],
)
def test_renderer_refuses_what_it_does_not_implement(source: str, error: type, message: str) -> None:
    values = {**VALUES, "odd": {"key": "two words"}}
    with pytest.raises(error, match=re.escape(message)):
        run_template(source, values)


def test_values_overrides_merge_like_helm() -> None:
    chart = render_chart(CHART, {"resources": {"limits": {"memory": "8Gi"}}, "podAnnotations": None})
    resources = _container(chart.one("Deployment"))["resources"]
    assert resources == {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"cpu": "2", "memory": "8Gi"}}
    assert "podAnnotations" not in chart.values


# -- prometheus-operator ServiceMonitor (monitoring.coreos.com/v1) --------------------------------------
# Written from prometheus-operator's API reference (Documentation/api-reference/api.md,
# "ServiceMonitorSpec" and "Endpoint"): every field of those two types is listed, the fields
# this chart uses are typed exactly, and nothing else is accepted.

_DURATION = {
    "type": "string",
    "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$",
}
_LABEL_NAME = {"type": "string", "pattern": r"^[a-zA-Z_][a-zA-Z0-9_]*$"}
_RELABEL = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "action": {
            "enum": [
                *("replace", "Replace", "keep", "Keep", "drop", "Drop", "hashmod", "HashMod"),
                *("labelmap", "LabelMap", "labeldrop", "LabelDrop", "labelkeep", "LabelKeep"),
                *("lowercase", "Lowercase", "uppercase", "Uppercase"),
                *("keepequal", "KeepEqual", "dropequal", "DropEqual"),
            ]
        },
        "modulus": {"type": "integer", "minimum": 0},
        "regex": {"type": "string"},
        "replacement": {"type": "string"},
        "separator": {"type": "string"},
        "sourceLabels": {"type": "array", "items": _LABEL_NAME},
        "targetLabel": {"type": "string"},
    },
}
_ENDPOINT = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "port": {"type": "string", "minLength": 1},
        "targetPort": {"type": ["integer", "string"]},
        "path": {"type": "string", "pattern": "^/"},
        "scheme": {"enum": ["http", "https", "HTTP", "HTTPS"]},
        "params": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}},
        "interval": _DURATION,
        "scrapeTimeout": _DURATION,
        "honorLabels": {"type": "boolean"},
        "honorTimestamps": {"type": "boolean"},
        "trackTimestampsStaleness": {"type": "boolean"},
        "relabelings": {"type": "array", "items": _RELABEL},
        "metricRelabelings": {"type": "array", "items": _RELABEL},
        "enableHttp2": {"type": "boolean"},
        "filterRunning": {"type": "boolean"},
        "followRedirects": {"type": "boolean"},
        "proxyFromEnvironment": {"type": "boolean"},
        "proxyUrl": {"type": "string"},
        "noProxy": {"type": "string"},
        "proxyConnectHeader": {"type": "object"},
        "authorization": {"type": "object"},
        "basicAuth": {"type": "object"},
        "bearerTokenFile": {"type": "string"},
        "bearerTokenSecret": k8s("io.k8s.api.core.v1.SecretKeySelector"),
        "oauth2": {"type": "object"},
        "tlsConfig": {"type": "object"},
    },
}
SERVICE_MONITOR_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": k8s("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"),
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "endpoints"],
            "properties": {
                "selector": k8s("io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"),
                "endpoints": {"type": "array", "items": _ENDPOINT},
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "any": {"type": "boolean"},
                        "matchNames": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "jobLabel": {"type": "string"},
                "targetLabels": {"type": "array", "items": {"type": "string"}},
                "podTargetLabels": {"type": "array", "items": {"type": "string"}},
                "attachMetadata": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"node": {"type": "boolean"}},
                },
                "sampleLimit": {"type": "integer", "minimum": 0},
                "targetLimit": {"type": "integer", "minimum": 0},
                "labelLimit": {"type": "integer", "minimum": 0},
                "labelNameLengthLimit": {"type": "integer", "minimum": 0},
                "labelValueLengthLimit": {"type": "integer", "minimum": 0},
                "keepDroppedTargets": {"type": "integer", "minimum": 0},
                "bodySizeLimit": {"type": "string"},
                "scrapeClass": {"type": "string"},
                "scrapeProtocols": {"type": "array", "items": {"type": "string"}},
                "fallbackScrapeProtocol": {"type": "string"},
                "scrapeClassicHistograms": {"type": "boolean"},
                "convertClassicHistogramsToNHCB": {"type": "boolean"},
                "nativeHistogramBucketLimit": {"type": "integer", "minimum": 0},
                "nativeHistogramMinBucketFactor": {"type": ["integer", "number", "string"]},
                "selectorMechanism": {"enum": ["RelabelConfig", "RoleSelector"]},
                "serviceDiscoveryRole": {"enum": ["Endpoints", "EndpointSlice"]},
            },
        },
    },
}


# -- KServe (serving.kserve.io) ----------------------------------------------------------------------------
# How these are validated offline: with JSON schemas written here, not with KServe's own CRDs
# (they are not on PyPI, and GitHub cannot be reached at test time) and not with the kserve SDK
# (PyPI "kserve"): its generated model classes (openapi_types/attribute_map) would do, but the
# package requires protobuf<7 while Ember's gRPC stubs need protobuf>=7, so it cannot be in
# requirements-dev.txt, and installing it with --no-deps is not something `make` can do from a
# requirements file. So the schemas below list, for each KServe type the manifests use, every
# field of that type in KServe's API reference (checked against the kserve 0.21 SDK's
# attribute_map, see test_kserve_schema_fields_match_the_sdk, which runs where kserve is
# installed). KServe's own fields are typed here; the fields KServe inlines from Kubernetes'
# PodSpec and Container are references to kubernetes-validate's strict definitions of those very
# fields, so a misspelt probe or resource field fails exactly as in a Deployment.

_STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_PROTOCOLS = {"enum": ["v1", "v2", "grpc-v1", "grpc-v2"]}
_LOOSE = {"type": "object"}  # KServe types these manifests do not use: present, object-shaped

#: Fields of V1alpha1ServingRuntimeSpec (serving.kserve.io/v1alpha1).
SERVING_RUNTIME_SPEC_FIELDS = {
    "affinity": "pod",
    "annotations": _STR_MAP,
    "builtInAdapter": _LOOSE,
    "containers": {"type": "array", "minItems": 1, "items": k8s("io.k8s.api.core.v1.Container")},
    "disabled": {"type": "boolean"},
    "grpcDataEndpoint": {"type": "string"},
    "grpcEndpoint": {"type": "string"},
    "hostIPC": "pod",
    "httpDataEndpoint": {"type": "string"},
    "imagePullSecrets": "pod",
    "labels": _STR_MAP,
    "multiModel": {"type": "boolean"},
    "nodeSelector": "pod",
    "protocolVersions": {"type": "array", "items": _PROTOCOLS, "uniqueItems": True},
    "replicas": {"type": "integer", "minimum": 0},
    "resourceClaims": "pod",
    "schedulerName": "pod",
    "storageHelper": {
        "type": "object",
        "additionalProperties": False,
        "properties": {"disabled": {"type": "boolean"}},
    },
    "supportedModelFormats": {
        "type": "array",
        "items": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "version": {"type": "string"},
                "autoSelect": {"type": "boolean"},
                "priority": {"type": "integer", "minimum": 1},
            },
        },
    },
    "tolerations": "pod",
    "volumes": "pod",
    "workerSpec": _LOOSE,
}

#: V1beta1PredictorSpec's fields inlined from Kubernetes' PodSpec.
_PREDICTOR_POD_FIELDS = (
    "activeDeadlineSeconds", "affinity", "automountServiceAccountToken", "containers", "dnsConfig",
    "dnsPolicy", "enableServiceLinks", "ephemeralContainers", "hostAliases", "hostIPC",
    "hostNetwork", "hostPID", "hostUsers", "hostname", "hostnameOverride", "imagePullSecrets",
    "initContainers", "nodeName", "nodeSelector", "os", "overhead", "preemptionPolicy", "priority",
    "priorityClassName", "readinessGates", "resourceClaims", "restartPolicy", "runtimeClassName",
    "schedulerName", "schedulingGates", "schedulingGroup", "securityContext", "serviceAccount",
    "serviceAccountName", "setHostnameAsFQDN", "shareProcessNamespace", "subdomain",
    "terminationGracePeriodSeconds", "tolerations", "topologySpreadConstraints", "volumes",
)  # fmt: skip

#: V1beta1ModelSpec's fields inlined from Kubernetes' Container.
_MODEL_CONTAINER_FIELDS = (
    "args", "command", "env", "envFrom", "image", "imagePullPolicy", "lifecycle", "livenessProbe",
    "name", "ports", "readinessProbe", "resizePolicy", "resources", "restartPolicy",
    "restartPolicyRules", "securityContext", "startupProbe", "stdin", "stdinOnce",
    "terminationMessagePath", "terminationMessagePolicy", "tty", "volumeDevices", "volumeMounts",
    "workingDir",
)  # fmt: skip

#: Fields of V1beta1PredictorSpec: KServe's own, then those inlined from PodSpec ("pod").
PREDICTOR_SPEC_FIELDS: dict[str, Any] = {
    "annotations": _STR_MAP,
    "labels": _STR_MAP,
    "name": {"type": "string"},
    "minReplicas": {"type": "integer", "minimum": 0},
    "maxReplicas": {"type": "integer", "minimum": 0},
    "scaleTarget": {"type": "integer", "minimum": 1},
    "scaleMetric": {"enum": ["cpu", "memory", "concurrency", "rps"]},
    "scaleMetricType": {"enum": ["Utilization", "AverageValue"]},
    "containerConcurrency": {"type": "integer", "minimum": 0},
    "timeout": {"type": "integer", "minimum": 0},
    "canaryTrafficPercent": {"type": "integer", "minimum": 0, "maximum": 100},
    "autoScaling": _LOOSE,
    "batcher": _LOOSE,
    "logger": _LOOSE,
    "deploymentStrategy": k8s("io.k8s.api.apps.v1.DeploymentStrategy"),
    "storageContainerName": {"type": "string"},
    "storageUris": {"type": "array", "items": _LOOSE},
    "workerSpec": _LOOSE,
    "resources": k8s("io.k8s.api.core.v1.ResourceRequirements"),
    "model": "model",
    # The per-framework shortcuts (predictor.pytorch: ...) that modelFormat replaces.
    **dict.fromkeys(("huggingface", "lightgbm", "onnx", "paddle", "pmml", "pytorch"), _LOOSE),
    **dict.fromkeys(("sklearn", "tensorflow", "triton", "xgboost"), _LOOSE),
    **dict.fromkeys(_PREDICTOR_POD_FIELDS, "pod"),
}

#: Fields of V1beta1ModelSpec: KServe's own, then those inlined from Container ("container").
MODEL_SPEC_FIELDS: dict[str, Any] = {
    "modelFormat": {
        "type": "object",
        "additionalProperties": False,
        "required": ["name"],
        "properties": {"name": {"type": "string", "minLength": 1}, "version": {"type": "string"}},
    },
    "runtime": {"type": "string"},
    "runtimeVersion": {"type": "string"},
    "protocolVersion": _PROTOCOLS,
    "storageUri": {"type": "string", "pattern": "^[a-z0-9+.-]+://"},
    "storage": _LOOSE,
    "confidential": _LOOSE,
    **dict.fromkeys(_MODEL_CONTAINER_FIELDS, "container"),
}

INFERENCE_SERVICE_SPEC_FIELDS: dict[str, Any] = {
    "predictor": "predictor",
    "transformer": _LOOSE,
    "explainer": _LOOSE,
    "canary": {"type": "array", "items": _LOOSE},
    "tracing": _LOOSE,
}


def _closed(
    fields: dict[str, Any], inline: dict[str, str], version: str, required: tuple[str, ...] = ()
) -> dict[str, Any]:
    """A closed object schema; "pod"/"container" fields refer to that Kubernetes type's field."""
    definitions = _definitions(version)["$defs"]
    properties: dict[str, Any] = {}
    for name, spec in fields.items():
        if isinstance(spec, str) and spec in inline:
            owner = inline[spec]
            if name in definitions[owner]["properties"]:
                properties[name] = {"$ref": f"{K8S_DEFS}{owner}/properties/{name}"}
            else:  # newer than this Kubernetes version's type: present, but not checked
                properties[name] = {}
        else:
            properties[name] = spec
    return {
        "type": "object",
        "additionalProperties": False,
        "required": list(required),
        "properties": properties,
    }


def _top(api_version: str, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": False,
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": k8s("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"),
            "spec": spec,
            "status": _LOOSE,
        },
    }


@functools.cache
def kserve_schemas(version: str = "1.30") -> dict[str, dict[str, Any]]:
    pod = {"pod": "io.k8s.api.core.v1.PodSpec"}
    container = {"container": "io.k8s.api.core.v1.Container"}
    runtime_spec = _closed(SERVING_RUNTIME_SPEC_FIELDS, pod, version, required=("containers",))
    model = _closed(MODEL_SPEC_FIELDS, container, version, required=("modelFormat",))
    predictor = _closed(PREDICTOR_SPEC_FIELDS, pod, version)
    predictor["properties"]["model"] = model
    isvc_spec = _closed(INFERENCE_SERVICE_SPEC_FIELDS, {}, version, required=("predictor",))
    isvc_spec["properties"]["predictor"] = predictor
    return {
        "ClusterServingRuntime": _top("serving.kserve.io/v1alpha1", "ClusterServingRuntime", runtime_spec),
        "ServingRuntime": _top("serving.kserve.io/v1alpha1", "ServingRuntime", runtime_spec),
        "InferenceService": _top("serving.kserve.io/v1beta1", "InferenceService", isvc_spec),
    }


def validate_kserve(obj: dict[str, Any]) -> None:
    _validate_custom(obj, kserve_schemas()[obj["kind"]])


def _kserve_docs(name: str) -> list[dict[str, Any]]:
    return load_yaml_documents((KSERVE / name).read_text())


def test_kserve_manifests_validate() -> None:
    (runtime,) = _kserve_docs("cluster-serving-runtime.yaml")
    services = _kserve_docs("inference-service.yaml")
    assert [s["kind"] for s in services] == ["InferenceService", "InferenceService"]
    for obj in [runtime, *services]:
        validate_kserve(obj)
        assert not [path for path, value in _walk(obj) if value is None]
    assert "namespace" not in runtime["metadata"]  # cluster-scoped


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda o: o["spec"].__setitem__("supportedModelFormat", []), "supportedModelFormat"),
        (lambda o: o["spec"]["supportedModelFormats"][0].__setitem__("priority", "1"), "priority"),
        (lambda o: o["spec"]["supportedModelFormats"][0].__setitem__("autoselect", True), "autoselect"),
        (lambda o: o["spec"].__setitem__("protocolVersions", ["v3"]), "protocolVersions"),
        (lambda o: o["spec"]["containers"][0].__setitem__("arg", []), "arg"),
        (lambda o: o["spec"]["containers"][0]["resources"].__setitem__("request", {}), "request"),
        (
            lambda o: o["spec"]["containers"][0]["securityContext"].__setitem__("runAsUser", "1000"),
            "runAsUser",
        ),
        (lambda o: o["spec"].pop("containers"), "containers"),
    ],
)
def test_kserve_runtime_schema_catches_mistakes(mutate: Any, field: str) -> None:
    (runtime,) = _kserve_docs("cluster-serving-runtime.yaml")
    mutate(runtime)
    with pytest.raises(jsonschema.ValidationError, match=field):
        validate_kserve(runtime)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda o: o["spec"]["predictor"].__setitem__("pytroch", {}), "pytroch"),
        (lambda o: o["spec"]["predictor"]["model"].__setitem__("storageURI", "gs://x"), "storageURI"),
        (lambda o: o["spec"]["predictor"]["model"].pop("modelFormat"), "modelFormat"),
        (lambda o: o["spec"]["predictor"]["model"].__setitem__("protocolVersion", "v3"), "v3"),
        (lambda o: o["spec"]["predictor"].__setitem__("minReplicas", -1), "-1"),
        (lambda o: o["spec"]["predictor"]["model"]["resources"].__setitem__("limit", {}), "limit"),
        (lambda o: o["spec"].pop("predictor"), "predictor"),
    ],
)
def test_inference_service_schema_catches_mistakes(mutate: Any, field: str) -> None:
    service = _kserve_docs("inference-service.yaml")[0]
    mutate(service)
    with pytest.raises(jsonschema.ValidationError, match=field):
        validate_kserve(service)


def test_kserve_runtime_contract() -> None:
    (runtime,) = _kserve_docs("cluster-serving-runtime.yaml")
    assert runtime["metadata"]["name"] == "kserve-ember"
    spec = runtime["spec"]
    assert spec["supportedModelFormats"] == [
        {"name": "pytorch", "version": "1", "autoSelect": True, "priority": 1}
    ]
    assert spec["protocolVersions"] == ["v1", "v2", "grpc-v2"]
    assert spec["annotations"] == {
        "prometheus.kserve.io/port": "8082",
        "prometheus.kserve.io/path": "/metrics",
    }
    (container,) = spec["containers"]
    assert container["name"] == "kserve-container"
    assert container["image"] == "localhost/emberserve:0.1.0"
    assert "command" not in container  # the image's entrypoint runs the args as given
    assert container["args"] == [
        "emberserve",
        "--foreground",
        "--model-store=/mnt/models/model-store",
        "--ts-config=/mnt/models/config/config.properties",
    ]
    assert container["env"] == [{"name": "TS_SERVICE_ENVELOPE", "value": "{{.Labels.serviceEnvelope}}"}]
    assert set(container["resources"]) == {"requests", "limits"}
    context = container["securityContext"]
    assert context["runAsNonRoot"] is True and context["runAsUser"] == 1000
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}


def test_inference_services_use_the_runtime() -> None:
    rest, grpc = _kserve_docs("inference-service.yaml")
    for service in (rest, grpc):
        model = service["spec"]["predictor"]["model"]
        assert model["modelFormat"]["name"] == "pytorch"
        assert model["runtime"] == "kserve-ember"
        assert re.match("[a-z0-9]+://", model["storageUri"])
    assert rest["spec"]["predictor"]["model"]["protocolVersion"] == "v2"
    grpc_model = grpc["spec"]["predictor"]["model"]
    assert grpc_model["protocolVersion"] == "grpc-v2"
    props = dict(javaproperties.loads((KSERVE / "config.properties").read_text()))
    assert grpc_model["ports"] == [
        {"name": "h2c", "containerPort": int(props["grpc_inference_port"]), "protocol": "TCP"}
    ]


def test_kserve_config_properties() -> None:
    props = dict(javaproperties.loads((KSERVE / "config.properties").read_text()))
    assert props["inference_address"] == "http://0.0.0.0:8080"
    assert props["metrics_address"] == "http://0.0.0.0:8082"
    assert props["grpc_inference_port"] == "7070"
    assert props["model_store"] == "/mnt/models/model-store"
    for key, value in {
        "enable_envvars_config": "true",
        "service_envelope": "kservev2",
        "ts_open_inference_protocol": "true",
        "metrics_mode": "prometheus",
        "token_auth_exempt_health": "true",
        "load_models": "all",
    }.items():
        assert props[key] == value, key
    for key, value in props.items():
        assert key in KEYS, f"Ember does not know {key}"
        KEYS[key].parse(value, Path("/"))
    assert KEYS["service_envelope"].env == "TS_SERVICE_ENVELOPE"  # what the runtime's env sets


def _sdk_attribute_map(models: Path, module: str) -> set[str]:
    tree = ast.parse((models / f"{module}.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "attribute_map":
            return set(ast.literal_eval(node.value).values())
    raise AssertionError(f"no attribute_map in {module}")


def test_kserve_schema_fields_match_the_sdk() -> None:
    """Where the kserve SDK is installed (pip install --no-deps kserve), compare field names.

    The SDK's modules are read, not imported (importing kserve needs its many dependencies).
    """
    spec = importlib.util.find_spec("kserve")
    if spec is None or spec.origin is None:
        pytest.skip("kserve SDK not installed (optional: pip install --no-deps kserve==0.21.0)")
    models = Path(spec.origin).parent / "models"
    assert _sdk_attribute_map(models, "v1alpha1_serving_runtime_spec") == set(SERVING_RUNTIME_SPEC_FIELDS)
    supported = SERVING_RUNTIME_SPEC_FIELDS["supportedModelFormats"]["items"]["properties"]
    assert _sdk_attribute_map(models, "v1alpha1_supported_model_format") == set(supported)
    assert _sdk_attribute_map(models, "v1beta1_inference_service_spec") == set(INFERENCE_SERVICE_SPEC_FIELDS)
    assert _sdk_attribute_map(models, "v1beta1_predictor_spec") == set(PREDICTOR_SPEC_FIELDS)
    assert _sdk_attribute_map(models, "v1beta1_model_spec") == set(MODEL_SPEC_FIELDS)
    model_format = MODEL_SPEC_FIELDS["modelFormat"]["properties"]
    assert _sdk_attribute_map(models, "v1beta1_model_format") == set(model_format)
