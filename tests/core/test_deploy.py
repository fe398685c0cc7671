"""deploy/: the cluster config loads, each node's environment gives it its own id and URL, and
the compose file, the Kubernetes manifests and the Dockerfile agree with the config and each
other.

Nothing is built or started here (no image, no registry): these are the checks that need
neither. The YAML checks need PyYAML (awscli, a dev dependency, brings it) and skip without it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from helpers import ROOT

from runtime.cli.functions import with_store
from runtime.configfile import ConfigFile, load

DEPLOY = ROOT / "deploy"
CONFIG = DEPLOY / "warmstart.toml"
#: where the nodes find the config, in the image and in every deployment
CONFIG_MOUNT = "/etc/warmstart/warmstart.toml"


def _config() -> ConfigFile:
    return load(CONFIG)


def _yaml(name: str) -> list[Any]:
    yaml = pytest.importorskip("yaml")
    return list(yaml.safe_load_all((DEPLOY / name).read_text(encoding="utf-8")))


def _kind(docs: list[Any], kind: str) -> dict[str, Any]:
    found = [doc for doc in docs if doc["kind"] == kind]
    assert len(found) == 1, f"one {kind} expected, found {len(found)}"
    result: dict[str, Any] = found[0]
    return result


# -- the config ---------------------------------------------------------------------------------


def test_cluster_config_loads_with_a_shared_append_only_store() -> None:
    config = _config()
    store = config.store
    assert store.shared
    assert store.url is not None
    assert urlsplit(store.url).hostname == "redis"
    assert store.require_append_only
    assert store.prefix == "warmstart"
    assert store.lease_s == 10.0
    # per node, from the environment: a value in the shared file would be every node's
    assert store.node_id is None
    assert store.advertise_url is None
    # beyond loopback, so only with keys
    assert config.service.host == "0.0.0.0"
    assert config.auth.enabled
    assert config.functions["hello"].code == "/opt/warmstart/functions/hello"
    assert config.schedules["tick"].function == "hello"


def test_the_function_the_config_names_is_in_the_image() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    code = _config().functions["hello"].code
    assert re.search(rf"^COPY examples/hello {re.escape(code)}$", dockerfile, re.M)
    assert (ROOT / "examples" / "hello" / "app.py").is_file()


# -- what differs per node: the environment ---------------------------------------------------


def test_each_compose_node_gets_its_own_id_and_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """What `warmstart serve` makes of the shared file and each node's environment."""
    monkeypatch.delenv("WARMSTART_STORE", raising=False)
    seen = set()
    for name, service in _nodes(_compose()).items():
        for key, value in service["environment"].items():
            monkeypatch.setenv(key, value)
        store = with_store(_config(), None, None).store
        assert store.node_id == name
        assert store.advertise_url == f"http://{name}:{_config().service.port}"
        assert store.url == _config().store.url
        seen.add((store.node_id, store.advertise_url))
    assert len(seen) == 3


# -- the image ----------------------------------------------------------------------------------


def test_dockerfile_copies_what_exists_and_serves_the_config_port() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    copies = re.findall(r"^COPY (?!--from)(?:--\S+ )*(.+) \S+$", dockerfile, re.M)
    assert copies, "no COPY found"
    for sources in copies:
        for source in sources.split():
            assert (ROOT / source).exists(), f"COPY {source}: no such path in the repository"
    assert 'ENTRYPOINT ["warmstart"]' in dockerfile
    assert f'CMD ["serve", "--config", "{CONFIG_MOUNT}"]' in dockerfile
    assert f"EXPOSE {_config().service.port}" in dockerfile
    users = re.findall(r"^USER (\S+)$", dockerfile, re.M)
    assert users
    assert users[-1] not in ("root", "0")


# -- compose ------------------------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    (compose,) = _yaml("compose.yaml")
    result: dict[str, Any] = compose
    return result


def _nodes(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose["services"].items()
        if "WARMSTART_NODE_ID" in service.get("environment", {})
    }


def test_compose_redis_keeps_an_append_only_file_on_a_volume() -> None:
    compose = _compose()
    store = urlsplit(str(_config().store.url))
    redis = compose["services"][store.hostname]
    assert redis["image"] == "redis:7"
    command = redis["command"]
    assert command[0] == "redis-server"
    options = dict(zip(command[1::2], command[2::2], strict=True))
    assert options["--appendonly"] == "yes"
    assert options["--appendfsync"] == "everysec"
    assert options["--maxmemory-policy"] == "noeviction"
    volume, target = redis["volumes"][0].split(":")
    assert target == "/data"
    assert volume in compose["volumes"]
    assert "ping" in redis["healthcheck"]["test"]
    assert store.port in (None, 6379)  # the image's port, reached on the compose network


def test_compose_runs_three_nodes_on_the_redis_each_its_own() -> None:
    compose = _compose()
    config = _config()
    nodes = _nodes(compose)
    assert sorted(nodes) == ["node1", "node2", "node3"]
    ids = [service["environment"]["WARMSTART_NODE_ID"] for service in nodes.values()]
    assert len(set(ids)) == 3
    host_ports = set()
    redis = urlsplit(str(config.store.url)).hostname
    for name, service in nodes.items():
        assert service["image"] == "warmstart:local"
        assert service["depends_on"][redis]["condition"] == "service_healthy"
        advertised = urlsplit(service["environment"]["WARMSTART_ADVERTISE_URL"])
        # the others reach it by its compose name, at the port it listens on
        assert advertised.hostname == name == service["hostname"]
        assert advertised.port == config.service.port
        (published,) = service["ports"]
        address, host_port, container_port = published.split(":")
        assert address == "127.0.0.1"
        assert int(container_port) == config.service.port
        host_ports.add(int(host_port))
        assert "/healthz" in " ".join(service["healthcheck"]["test"])
        mounts = {m.split(":")[1]: m.split(":") for m in service["volumes"]}
        source, _, mode = mounts[CONFIG_MOUNT]
        assert (DEPLOY / source).resolve() == CONFIG.resolve()
        assert mode == "ro"
        code = config.functions["hello"].code
        source, _, mode = mounts[code]
        assert (DEPLOY / source / "app.py").is_file()
        assert mode == "ro"
    assert host_ports == {9001, 9002, 9003}


# -- Kubernetes ---------------------------------------------------------------------------------


def _labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def test_k8s_redis_is_one_append_only_pod_on_a_claim() -> None:
    docs = _yaml("k8s/redis.yaml")
    store = urlsplit(str(_config().store.url))
    service = _kind(docs, "Service")
    assert service["metadata"]["name"] == store.hostname
    assert [p["port"] for p in service["spec"]["ports"]] == [6379]
    sts = _kind(docs, "StatefulSet")["spec"]
    assert sts["replicas"] == 1
    assert _labels_match(service["spec"]["selector"], sts["template"]["metadata"]["labels"])
    (container,) = sts["template"]["spec"]["containers"]
    args = container["args"]
    assert args[0] == "redis-server"
    options = dict(zip(args[1::2], args[2::2], strict=True))
    assert options["--appendonly"] == "yes"
    assert options["--appendfsync"] == "everysec"
    assert options["--maxmemory-policy"] == "noeviction"
    (claim,) = sts["volumeClaimTemplates"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == options["--dir"] == "/data"


def test_k8s_configmap_is_the_cluster_config() -> None:
    configmap = _kind(_yaml("k8s/warmstart.yaml"), "ConfigMap")
    assert configmap["data"]["warmstart.toml"] == CONFIG.read_text(encoding="utf-8")


def test_k8s_nodes_take_their_id_and_url_from_the_pod(monkeypatch: pytest.MonkeyPatch) -> None:
    docs = _yaml("k8s/warmstart.yaml")
    config = _config()
    deployment = _kind(docs, "Deployment")["spec"]
    assert deployment["replicas"] == 3
    pod = deployment["template"]
    (container,) = pod["spec"]["containers"]
    env = [(e["name"], e) for e in container["env"]]
    names = [name for name, _ in env]
    by_name = dict(env)
    assert by_name["WARMSTART_NODE_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert by_name["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    # $(POD_IP) expands only when POD_IP is defined earlier in the list
    assert names.index("POD_IP") < names.index("WARMSTART_ADVERTISE_URL")
    port = config.service.port
    assert by_name["WARMSTART_ADVERTISE_URL"]["value"] == f"http://$(POD_IP):{port}"
    # what a pod's warmstart serve makes of it, once Kubernetes has expanded $(POD_IP)
    monkeypatch.delenv("WARMSTART_STORE", raising=False)
    monkeypatch.setenv("WARMSTART_NODE_ID", "warmstart-7d9c8b6f5-x2x4q")
    url = by_name["WARMSTART_ADVERTISE_URL"]["value"].replace("$(POD_IP)", "10.244.1.7")
    monkeypatch.setenv("WARMSTART_ADVERTISE_URL", url)
    store = with_store(config, None, None).store
    assert store.node_id == "warmstart-7d9c8b6f5-x2x4q"
    assert store.advertise_url == f"http://10.244.1.7:{port}"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        check = container[probe]["httpGet"]
        assert check["path"] == "/healthz"
        assert ports[check["port"]] == port
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    config_mount = mounts[str(Path(CONFIG_MOUNT).parent)]
    assert config_mount["readOnly"]
    configmap = _kind(docs, "ConfigMap")["metadata"]["name"]
    assert volumes[config_mount["name"]]["configMap"]["name"] == configmap
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]  # the root file system is read-only
    assert container["securityContext"]["readOnlyRootFilesystem"]
    # the image's user
    dockerfile = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    assert f"--uid {pod['spec']['securityContext']['runAsUser']} " in dockerfile
    assert pod["spec"]["terminationGracePeriodSeconds"] > config.service.shutdown_timeout_s
    service = _kind(docs, "Service")["spec"]
    assert _labels_match(service["selector"], pod["metadata"]["labels"])
    assert _labels_match(deployment["selector"]["matchLabels"], pod["metadata"]["labels"])
    assert [p["port"] for p in service["ports"]] == [port]


def test_kustomization_lists_every_manifest() -> None:
    (kustomization,) = _yaml("k8s/kustomization.yaml")
    manifests = sorted(p.name for p in (DEPLOY / "k8s").glob("*.yaml"))
    assert sorted([*kustomization["resources"], "kustomization.yaml"]) == manifests
    (image,) = kustomization["images"]
    assert f"{image['newName']}:{image['newTag']}" == "warmstart:local"
