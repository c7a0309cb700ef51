"""deploy/kuberay-rayservice.yaml: a RayService whose Serve args are serve-ray's flags."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tei_ort.ray_proxy import PROXY_CALLBACK, PROXY_CALLBACK_ENV
from tei_ort.ray_serve import app

MANIFEST = Path(__file__).resolve().parents[2] / "deploy" / "kuberay-rayservice.yaml"


def _documents() -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all(MANIFEST.read_text())}


def _containers(cluster: dict[str, Any]) -> list[dict[str, Any]]:
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    return [c for group in groups for c in group["template"]["spec"]["containers"]]


def test_serve_application_args_are_serve_ray_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TOKENIZATION_WORKERS", raising=False)
    service = _documents()["RayService"]
    serve_config = yaml.safe_load(service["spec"]["serveConfigV2"])
    (application,) = serve_config["applications"]
    assert application["import_path"] == "tei_ort.ray_serve:app"
    assert application["route_prefix"] == "/"
    args = application["args"]
    # the builder parses them as serve-ray does: an unknown or invalid flag exits
    deployment = app(args)._bound_deployment
    settings, threads = deployment.init_args
    assert settings.model_id == args["model-id"]
    assert settings.engine_cache == args["engine-cache"]
    assert settings.max_batch_tokens == args["max-batch-tokens"]
    scaling = deployment._deployment_config.autoscaling_config
    assert (scaling.min_replicas, scaling.max_replicas) == (
        args["min-replicas"],
        args["max-replicas"],
    )
    assert scaling.target_ongoing_requests == args["target-ongoing-requests"]
    assert threads == args["num-cpus"] == deployment.ray_actor_options["num_cpus"]


def test_pods_mount_the_engine_cache_and_set_the_proxy_callback() -> None:
    documents = _documents()
    service = documents["RayService"]
    args = yaml.safe_load(service["spec"]["serveConfigV2"])["applications"][0]["args"]
    cluster = service["spec"]["rayClusterConfig"]
    for container in _containers(cluster):
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env[PROXY_CALLBACK_ENV] == PROXY_CALLBACK
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert args["engine-cache"] in mounts
    claim = documents["PersistentVolumeClaim"]
    assert "ReadWriteMany" in claim["spec"]["accessModes"]
    for group in cluster["workerGroupSpecs"]:
        (container,) = group["template"]["spec"]["containers"]
        assert float(container["resources"]["limits"]["cpu"]) >= args["num-cpus"]
        assert group["maxReplicas"] >= 1
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
