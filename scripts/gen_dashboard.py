"""Write deploy/grafana/ember-dashboard.json: a Grafana dashboard for Ember's clean metric family.

    python scripts/gen_dashboard.py            # rewrite the committed dashboard
    python scripts/gen_dashboard.py --check    # exit 1 when the committed one is stale (tests)

Generated so that panels stay consistent (same datasource variable, labels and units); every
query uses only ``ember_*`` metrics, which a test checks against a real scrape.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

TARGET = Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "ember-dashboard.json"
SELECTOR = 'model=~"$model"'


def quantile(q: float, histogram: str) -> str:
    """The ``q`` quantile of an ``ember_*`` histogram, per model."""
    rate = f"rate({histogram}_bucket{{{SELECTOR}}}[$__rate_interval])"
    return f"histogram_quantile({q}, sum by (le, model) ({rate}))"


#: (title, unit, PromQL expressions with their legends)
PANELS: list[tuple[str, str, list[tuple[str, str]]]] = [
    (
        "Requests per second by status",
        "reqps",
        [
            (
                f"sum by (model, code) (rate(ember_requests_total{{{SELECTOR}}}[$__rate_interval]))",
                "{{model}} {{code}}",
            )
        ],
    ),
    (
        "Request latency (p50, p99)",
        "s",
        [
            (
                quantile(0.5, "ember_request_duration_seconds"),
                "p50 {{model}}",
            ),
            (
                quantile(0.99, "ember_request_duration_seconds"),
                "p99 {{model}}",
            ),
        ],
    ),
    (
        "Queue wait (p99)",
        "s",
        [
            (
                quantile(0.99, "ember_queue_wait_seconds"),
                "{{model}}",
            )
        ],
    ),
    (
        "Handler time per batch (p99)",
        "s",
        [
            (
                quantile(0.99, "ember_handler_duration_seconds"),
                "{{model}}",
            )
        ],
    ),
    (
        "Mean batch size",
        "short",
        [
            (
                f"sum by (model) (rate(ember_batch_size_sum{{{SELECTOR}}}[$__rate_interval])) / "
                f"sum by (model) (rate(ember_batch_size_count{{{SELECTOR}}}[$__rate_interval]))",
                "{{model}}",
            )
        ],
    ),
    (
        "Workers by state",
        "short",
        [(f"sum by (model, state) (ember_workers{{{SELECTOR}}})", "{{model}} {{state}}")],
    ),
    (
        "Queue depth",
        "short",
        [(f"sum by (model, version) (ember_queue_depth{{{SELECTOR}}})", "{{model}} {{version}}")],
    ),
]


def dashboard() -> dict[str, object]:
    panels = []
    for i, (title, unit, targets) in enumerate(PANELS):
        panels.append(
            {
                "id": i + 1,
                "type": "timeseries",
                "title": title,
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "gridPos": {"h": 8, "w": 12, "x": (i % 2) * 12, "y": (i // 2) * 8},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "targets": [
                    {"refId": chr(ord("A") + j), "expr": expr, "legendFormat": legend}
                    for j, (expr, legend) in enumerate(targets)
                ],
            }
        )
    return {
        "title": "Ember",
        "uid": "ember-overview",
        "description": "Ember model server: traffic, latency, batching and workers (ember_* metrics).",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s",
        "tags": ["ember", "model-serving"],
        "templating": {
            "list": [
                {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Data source"},
                {
                    "name": "model",
                    "type": "query",
                    "label": "Model",
                    "datasource": {"type": "prometheus", "uid": "${datasource}"},
                    "query": "label_values(ember_queue_depth, model)",
                    "includeAll": True,
                    "multi": True,
                    "current": {"text": "All", "value": "$__all"},
                    "allValue": ".*",
                },
            ]
        },
        "panels": panels,
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="only check the committed dashboard is current")
    args = parser.parse_args()
    text = render()
    if args.check:
        current = TARGET.read_text() if TARGET.exists() else ""
        if current != text:
            print(f"{TARGET} is stale: run python scripts/gen_dashboard.py", file=sys.stderr)
            return 1
        return 0
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    TARGET.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
