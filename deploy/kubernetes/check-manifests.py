#!/usr/bin/env python3
"""Check the manifests without a cluster: each document is read into the typed models of
the official Kubernetes Python client (field names, types, required fields) and written
back; a field the API does not know is dropped on the way, so any difference from the
original is reported. Not a server-side validation: admission, defaults and policies are
not checked.

    python3 -m venv /tmp/k8s && /tmp/k8s/bin/pip install kubernetes pyyaml
    kubectl kustomize deploy/kubernetes/ | /tmp/k8s/bin/python deploy/kubernetes/check-manifests.py
    # or, without kubectl: ... check-manifests.py < deploy/kubernetes/bosun.yaml
"""
import json
import sys

import yaml
from kubernetes import client


def norm(x):
    """Drop empty values, which the client writes back as null."""
    if isinstance(x, dict):
        return {k: norm(v) for k, v in x.items() if v not in (None, {}, [])}
    if isinstance(x, list):
        return [norm(v) for v in x]
    return x


def main():
    api = client.ApiClient()
    bad = 0
    for doc in yaml.safe_load_all(sys.stdin):
        if not doc:
            continue
        model = doc["apiVersion"].split("/")[-1].capitalize() + doc["kind"]
        name = doc.get("metadata", {}).get("name", "?")
        try:
            obj = api.deserialize(json.dumps(doc), model, "application/json")
        except Exception as e:  # a missing required field, a wrong type
            print(f"FAIL {model} {name}: {e}")
            bad = 1
            continue
        back = norm(api.sanitize_for_serialization(obj))
        if back == norm(doc):
            print(f"ok   {model} {name}")
        else:
            print(f"FAIL {model} {name}: unknown or misplaced fields; as the API reads it:")
            print(json.dumps(back, indent=1))
            bad = 1
    return bad


if __name__ == "__main__":
    sys.exit(main())
