"""Three ``warmstart serve`` nodes on one Redis, driven by boto3 and the ``warmstart`` CLI as a
user would: functions made on one node run on every node; the nodes list each other; a sync
invoke goes where a warm environment waits; reserved concurrency holds across the cluster;
a node SIGKILLed mid-stream loses no accepted event or job; a Redis SIGKILLed and restarted
refuses what it cannot store, then goes on with nothing acknowledged lost."""

from __future__ import annotations

import collections
import concurrent.futures
import functools
import io
import json
import textwrap
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cluster_support import Cluster, Node, eventually
from service_support import create_queue, warmstart

pytestmark = pytest.mark.slow

APP = textwrap.dedent(
    """
    import os, time

    def _note(line):
        with open(os.environ["LEDGER"], "a") as f:
            f.write(line + "\\n")

    def echo(event, context):
        time.sleep(event.get("sleep", 0))
        return {"pid": os.getpid(), "greeting": os.environ.get("GREETING"), "event": event}

    def record(event, context):
        _note(f"event {event['n']} {context.aws_request_id}")
        time.sleep(event.get("sleep", 0))
        return event["n"]

    def work(event, context):
        env = context.client_context.env
        _note(f"job {env['AWS_BATCH_JOB_ID']} {env['AWS_BATCH_JOB_ATTEMPT']}")
        time.sleep(float(event.get("s", "0")))
        return "done"
    """
)

ROLE = "arn:aws:iam::000000000000:role/lambda-role"


def _config(tmp_path: Path, lease_s: float = 2.0, auth: bool = False) -> str:
    code = tmp_path / "code"
    code.mkdir(exist_ok=True)
    (code / "app.py").write_text(APP)
    ledger = tmp_path / "ledger.txt"
    return textwrap.dedent(
        f"""
        [service]
        shutdown_timeout_s = 5

        [store]
        lease_s = {lease_s}
        {"[auth]" if auth else ""}
        {'keys = { AKIDEXAMPLE = "secret" }' if auth else ""}

        [batch]
        max_vcpus = 4
        kill_grace_s = 1

        [functions.record]
        handler = "app.record"
        code = "{code}"
        environment = {{ LEDGER = "{ledger}" }}

        [functions.work]
        handler = "app.work"
        code = "{code}"
        timeout_s = 60
        environment = {{ LEDGER = "{ledger}" }}
        """
    )


def _ledger(tmp_path: Path) -> list[str]:
    path = tmp_path / "ledger.txt"
    return path.read_text().splitlines() if path.exists() else []


def _zip(source: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", source)
    return buffer.getvalue()


def _invoke(
    client: Any, name: str, payload: dict[str, Any], **kw: Any
) -> tuple[Any, dict[str, str]]:
    answer = client.invoke(FunctionName=name, Payload=json.dumps(payload).encode(), **kw)
    headers = answer["ResponseMetadata"]["HTTPHeaders"]
    return json.loads(answer["Payload"].read() or b"null"), headers


def test_functions_are_cluster_wide(cluster: Callable[..., Cluster], tmp_path: Path) -> None:
    c = cluster(_config(tmp_path))
    n1, n2, n3 = (n.client() for n in c.nodes)
    n1.create_function(
        FunctionName="hello",
        Runtime="python3.11",
        Role=ROLE,
        Handler="app.echo",
        Code={"ZipFile": _zip(APP)},
    )
    t0 = time.monotonic()
    for other in (n2, n3):
        eventually(functools.partial(other.get_function, FunctionName="hello"), 1.0, "hello there")
    assert time.monotonic() - t0 < 1.0
    got, headers = _invoke(n3, "hello", {"a": 1})
    assert got["event"] == {"a": 1}

    n2.update_function_configuration(
        FunctionName="hello", Environment={"Variables": {"GREETING": "hey"}}
    )
    eventually(lambda: _invoke(n3, "hello", {})[0]["greeting"] == "hey", 1.0, "the new environment")
    new_code = APP.replace('"greeting": os.environ.get("GREETING")', '"greeting": "v2"')
    n3.update_function_code(FunctionName="hello", ZipFile=_zip(new_code))
    eventually(lambda: _invoke(n1, "hello", {})[0]["greeting"] == "v2", 1.0, "the new code")
    sha = n3.get_function(FunctionName="hello")["Configuration"]["CodeSha256"]
    assert n1.get_function(FunctionName="hello")["Configuration"]["CodeSha256"] == sha

    version = n1.publish_version(FunctionName="hello")["Version"]
    n1.create_alias(FunctionName="hello", Name="live", FunctionVersion=version)
    eventually(
        lambda: n2.get_alias(FunctionName="hello", Name="live")["FunctionVersion"] == version,
        1.0,
        "the alias",
    )
    _, headers = _invoke(n2, "hello", {}, Qualifier="live")
    assert headers["x-amz-executed-version"] == version

    n2.delete_function(FunctionName="hello")
    for other in (n1, n3):
        eventually(functools.partial(_gone, other, "hello"), 1.0, "hello gone")
        with pytest.raises(other.exceptions.ResourceNotFoundException):
            other.get_function(FunctionName="hello")


def _gone(client: Any, name: str) -> bool:
    return all(f["FunctionName"] != name for f in client.list_functions()["Functions"])


def test_a_node_started_later_has_every_function(
    cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    c = cluster(_config(tmp_path), nodes=1)
    c.nodes[0].client().create_function(
        FunctionName="late", Runtime="python3.11", Role=ROLE, Handler="app.echo",
        Code={"ZipFile": _zip(APP)},
    )  # fmt: skip
    fresh = c.add("n2").client()
    assert fresh.get_function(FunctionName="late")["Configuration"]["Handler"] == "app.echo"
    assert _invoke(fresh, "late", {"b": 2})[0]["event"] == {"b": 2}


def _sees(c: Cluster, node: Node, ids: list[str]) -> bool:
    return c.live_ids(node) == ids


def test_nodes_list_each_other(cluster: Callable[..., Cluster], tmp_path: Path) -> None:
    c = cluster(_config(tmp_path))
    for node in c.nodes:
        eventually(
            functools.partial(_sees, c, node, ["n1", "n2", "n3"]), 3.0, f"{node.id} sees all"
        )
    listed = c.nodes[0].get("/warmstart/nodes")
    assert listed["NodeId"] == "n1"
    mine = [n for n in listed["Nodes"] if n["Self"]]
    assert [n["NodeId"] for n in mine] == ["n1"]
    assert all(n["Url"].startswith("http://127.0.0.1:") for n in listed["Nodes"])
    assert all(n["FreeEnvironments"] > 0 for n in listed["Nodes"])
    shown = warmstart("nodes", "--endpoint", c.nodes[1].url)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].split()[:2] == ["NODE", "URL"]
    assert [line.split()[0] for line in lines[1:]] == ["n1", "n2", "n3"]
    assert "n2 *" in shown.stdout

    metrics = c.nodes[2].text("/metrics")
    assert "warmstart_cluster_nodes 3.0" in metrics
    assert 'warmstart_forwarded_invocations_total{direction="sent"}' in metrics
    assert "warmstart_concurrency_token_grants_total" in metrics

    c.node("n3").stop()  # a node that stops leaves at once
    eventually(lambda: c.live_ids(c.nodes[0]) == ["n1", "n2"], 2.0, "n3 gone")


def test_a_sync_invoke_goes_to_the_warm_node(
    cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    c = cluster(_config(tmp_path), nodes=2)
    n1, n2 = (n.client() for n in c.nodes)
    n1.create_function(
        FunctionName="warm", Runtime="python3.11", Role=ROLE, Handler="app.echo",
        Code={"ZipFile": _zip(APP)},
    )  # fmt: skip
    eventually(lambda: n2.get_function(FunctionName="warm"), 1.0, "warm on n2")
    first, headers = _invoke(n1, "warm", {})
    home = headers["x-warmstart-node"]  # a cold start goes to the function's home node
    other = c.node("n2" if home == "n1" else "n1")

    def idle_seen_by_other() -> bool:
        nodes = {n["NodeId"]: n for n in other.get("/warmstart/nodes")["Nodes"]}
        return int(nodes[home]["IdleWarm"].get("warm", 0)) >= 1

    eventually(idle_seen_by_other, 3.0, "the idle environment in the other node's view")
    again, headers = _invoke(other.client(), "warm", {"x": 1})
    assert headers["x-warmstart-node"] == home, "forwarded to the warm environment"
    assert again["pid"] == first["pid"]  # the same warm environment: no cold start
    assert again["event"] == {"x": 1}
    # a forwarded call is never forwarded again, and errors come back as they are
    with pytest.raises(n2.exceptions.ResourceNotFoundException):
        n2.invoke(FunctionName="nothing-here", Payload=b"{}")


def test_a_node_dying_with_a_forwarded_call_answers_it_once(
    cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    c = cluster(_config(tmp_path), nodes=2)
    n1 = c.nodes[0].client()
    n1.create_function(
        FunctionName="slow", Runtime="python3.11", Role=ROLE, Handler="app.echo",
        Code={"ZipFile": _zip(APP)},
    )  # fmt: skip
    _, headers = _invoke(n1, "slow", {})
    home = c.node(headers["x-warmstart-node"])
    other = c.node("n2" if home.id == "n1" else "n1")
    eventually(functools.partial(other.client().get_function, FunctionName="slow"), 1.0, "slow")
    client = other.client()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        call = pool.submit(_invoke, client, "slow", {"sleep": 5})
        eventually(
            lambda: home.get("/warmstart/nodes")["Nodes"] and _busy(home) == 1, 5.0, "running"
        )
        home.kill()  # SIGKILL with the forwarded call running on it
        with pytest.raises(client.exceptions.ServiceException, match="went away"):
            call.result(timeout=30)
    # the node that is left runs the next call itself
    again, headers = _invoke(client, "slow", {"after": 1})
    assert headers["x-warmstart-node"] == other.id
    assert again["event"] == {"after": 1}


def _busy(node: Node) -> int:
    mine = [n for n in node.get("/warmstart/nodes")["Nodes"] if n["Self"]]
    return int(mine[0]["BusyEnvironments"]) if mine else 0


def test_forwarded_calls_are_signed_again(cluster: Callable[..., Cluster], tmp_path: Path) -> None:
    """With [auth] keys the client's signature names the first node's host: the node signs
    the forwarded call itself, with the configured key."""
    c = cluster(_config(tmp_path, auth=True), nodes=2)
    n1, n2 = (n.client() for n in c.nodes)
    n1.create_function(
        FunctionName="signed", Runtime="python3.11", Role=ROLE, Handler="app.echo",
        Code={"ZipFile": _zip(APP)},
    )  # fmt: skip
    eventually(lambda: n2.get_function(FunctionName="signed"), 1.0, "signed on n2")
    _, headers = _invoke(n1, "signed", {})
    home = headers["x-warmstart-node"]
    other = c.node("n2" if home == "n1" else "n1")
    # warm there, or cold while the home node has room: either way the call goes there
    got, headers = _invoke(other.client(), "signed", {"s": 1})
    assert headers["x-warmstart-node"] == home
    assert got["event"] == {"s": 1}
    unsigned = other.client(aws_secret_access_key="wrong")
    with pytest.raises(unsigned.exceptions.ClientError, match="InvalidSignatureException"):
        unsigned.invoke(FunctionName="signed", Payload=b"{}")


def test_reserved_concurrency_holds_across_the_cluster(
    cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    c = cluster(_config(tmp_path), nodes=2)
    n1, n2 = (n.client() for n in c.nodes)
    n1.create_function(
        FunctionName="one", Runtime="python3.11", Role=ROLE, Handler="app.echo",
        Code={"ZipFile": _zip(APP)},
    )  # fmt: skip
    n1.put_function_concurrency(FunctionName="one", ReservedConcurrentExecutions=1)
    eventually(
        lambda: (
            n2.get_function_concurrency(FunctionName="one").get("ReservedConcurrentExecutions") == 1
        ),
        1.0,
        "the reservation on n2",
    )
    throttled = n1.exceptions.TooManyRequestsException

    def call(client: Any) -> str:
        try:
            client.invoke(FunctionName="one", Payload=b'{"sleep": 1.5}')
        except throttled:
            return "throttled"
        return "ran"

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(call, [n1, n2, n1, n2]))
    assert sorted(outcomes) == ["ran", "throttled", "throttled", "throttled"], outcomes
    # the token comes back: one call at a time runs on either node
    assert call(n2) == "ran"
    assert call(n1) == "ran"


def test_events_survive_a_node_sigkill(cluster: Callable[..., Cluster], tmp_path: Path) -> None:
    c = cluster(_config(tmp_path))
    clients = [n.client() for n in c.nodes]
    accepted: dict[int, str] = {}
    for n in range(240):
        client = clients[n % 3]
        if not c.nodes[n % 3].alive:
            client = clients[0]
        answer = client.invoke(
            FunctionName="record",
            InvocationType="Event",
            Payload=json.dumps({"n": n, "sleep": 0.05}).encode(),
        )
        assert answer["StatusCode"] == 202
        accepted[n] = answer["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
        if n == 120:
            c.node("n2").kill()  # mid-stream, with events in flight on it
    ran = eventually(
        lambda: (lambda seen: seen if set(accepted) <= set(seen) else None)(
            collections.Counter(int(line.split()[1]) for line in _ledger(tmp_path))
        ),
        30.0,
        "every accepted event to run",
    )
    duplicates = sum(count - 1 for count in ran.values())
    # only what the dead node had in flight may run twice (its dispatcher runs 16 at most)
    assert duplicates <= 16, duplicates
    assert set(ran) == set(accepted)


def test_batch_jobs_survive_a_node_sigkill(cluster: Callable[..., Cluster], tmp_path: Path) -> None:
    c = cluster(_config(tmp_path))
    batch = c.nodes[0].client("batch")
    batch.register_job_definition(
        jobDefinitionName="work",
        type="container",
        parameters={"warmstart:function": "work", "s": "0"},
        retryStrategy={"attempts": 2},
    )
    create_queue(batch)
    jobs = [
        batch.submit_job(
            jobName=f"j{i}", jobQueue="q", jobDefinition="work", parameters={"s": "3"}
        )["jobId"]
        for i in range(4)
    ]

    def running() -> bool:
        found = batch.describe_jobs(jobs=jobs)["jobs"]
        return all(job["status"] == "RUNNING" for job in found)

    eventually(running, 20.0, "the jobs to run")
    eventually(
        lambda: {line.split()[1] for line in _ledger(tmp_path)} == set(jobs),
        10.0,
        "every job's first attempt to start",
    )
    # the node that runs most of them dies; the other takes them over within the lease
    c.node(_busiest(c)).kill()
    survivor = next(n for n in c.nodes if n.alive).client("batch")
    done = eventually(
        lambda: (
            lambda found: (
                found if all(j["status"] in ("SUCCEEDED", "FAILED") for j in found) else None
            )
        )(survivor.describe_jobs(jobs=jobs)["jobs"]),
        40.0,
        "every job to end",
    )
    assert all(job["status"] == "SUCCEEDED" for job in done), [j["status"] for j in done]
    retried = [job for job in done if len(job["attempts"]) == 2]
    assert retried, "the dead node's attempts were counted and retried"
    for job in retried:
        assert job["attempts"][0]["statusReason"].startswith("Host EC2")
    attempts = collections.Counter(
        (line.split()[1], line.split()[2]) for line in _ledger(tmp_path) if line.startswith("job")
    )
    assert all(count == 1 for count in attempts.values()), "an attempt ran twice"


def _busiest(c: Cluster) -> str:
    """The node running the most batch attempts, as of the nodes' last beats."""
    time.sleep(1.0)  # one beat after the jobs started
    load = {
        node["NodeId"]: node["BatchRunning"] for node in c.nodes[0].get("/warmstart/nodes")["Nodes"]
    }
    return str(max(load, key=lambda k: load[k]))


def test_redis_restarted_under_the_nodes(cluster: Callable[..., Cluster], tmp_path: Path) -> None:
    c = cluster(_config(tmp_path), nodes=2)
    lam = c.nodes[0].client()
    before = [
        lam.invoke(FunctionName="record", InvocationType="Event",
                   Payload=json.dumps({"n": n, "sleep": 2}).encode())["StatusCode"]
        for n in range(3)
    ]  # fmt: skip
    assert before == [202, 202, 202]
    c.redis.kill()
    with pytest.raises(lam.exceptions.ServiceException, match="unreachable"):
        lam.invoke(FunctionName="record", InvocationType="Event", Payload=b'{"n": 100}')
    # a sync invoke needs no store: it still runs
    assert _invoke(lam, "record", {"n": 200})[0] == 200
    c.redis.start()
    after = eventually(
        lambda: (
            lam.invoke(FunctionName="record", InvocationType="Event", Payload=b'{"n": 3}')[
                "StatusCode"
            ]
            == 202
        ),
        10.0,
        "Events accepted again",
    )
    assert after
    seen = eventually(
        lambda: (lambda ns: ns if {0, 1, 2, 3} <= ns else None)(
            {int(line.split()[1]) for line in _ledger(tmp_path)}
        ),
        30.0,
        "every acknowledged event to run",
    )
    assert 100 not in seen  # refused, never half-stored
