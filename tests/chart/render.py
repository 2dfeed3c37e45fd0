"""Renders and lints the Stowage chart with Helm's own engine (helm-python-sdk bundles Helm v4 as a
library: no helm binary, no cluster, no network), for the Rust tests in crates/stowage/tests/chart.rs.

Reads one JSON request on stdin:

    {"chart": "charts/stowage",
     "renders": [{"name": "defaults", "values_files": ["a.yaml"], "values": {...},
                  "release": "stowage", "namespace": "platform"}],
     "lints": [{"name": "defaults", "values_files": [...], "values": {...}}]}

and writes one JSON answer on stdout:

    {"renders": [{"name": ..., "objects": [{"template": <path>, "object": <the object as JSON>}],
                  "notes": "...",
                  "error": null | "<Helm's message>"}],
     "lints": [{"name": ..., "messages": [{"severity": 1, "path": ..., "error": ...}],
                "errors": [...]}]}

Manifests are split into documents and each is converted to JSON with Helm's YAML reader (the
conversion `helm install` and `kubectl` make). Values files are merged in order, like `-f a -f b`;
`values` comes last, like `--set`.
"""

import json
import re
import sys

import helm_python as helm

DOC_SEPARATOR = re.compile(r"^---\s*$", re.MULTILINE)


def merged_values(case):
    values = {}
    for path in case.get("values_files", []):
        with open(path, encoding="utf-8") as f:
            deep_merge(values, helm.values_from_yaml(f.read()) or {})
    deep_merge(values, case.get("values", {}))
    return values


def deep_merge(into, overlay):
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            deep_merge(into[key], value)
        else:
            into[key] = value


def render(chart, case):
    out = {"name": case["name"], "objects": [], "notes": "", "error": None}
    try:
        values = merged_values(case)
        manifests = chart.render(
            values,
            name=case.get("release", "stowage"),
            namespace=case.get("namespace", "platform"),
            is_install=True,
        )
    except helm.HelmError as e:
        out["error"] = str(e)
        return out
    for path in sorted(manifests):
        text = manifests[path]
        if path.endswith("NOTES.txt"):
            out["notes"] = text
            continue
        for doc in DOC_SEPARATOR.split(text):
            if not doc.strip() or all(
                not line.strip() or line.lstrip().startswith("#") for line in doc.splitlines()
            ):
                continue
            obj = helm.values_from_yaml(doc)
            out["objects"].append({"template": path, "object": obj})
    return out


def lint(chart_dir, case):
    report = helm.lint(chart_dir, merged_values(case), strict=True, namespace="platform")
    return {"name": case["name"], "messages": report.get("messages", []), "errors": report.get("errors", [])}


def main():
    request = json.load(sys.stdin)
    chart_dir = request["chart"]
    chart = helm.Chart.load(chart_dir)
    answer = {
        "helm": helm.helm_sdk_version(),
        "renders": [render(chart, case) for case in request.get("renders", [])],
        "lints": [lint(chart_dir, case) for case in request.get("lints", [])],
    }
    json.dump(answer, sys.stdout)


if __name__ == "__main__":
    main()
