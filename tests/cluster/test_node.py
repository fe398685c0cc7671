"""A node's own view: one node on the SQLite file lists itself and keeps every call; the URL
the others are told for a node listening on every interface."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
from service_support import basic, config_of, serving

from runtime.service.app import API, BACKGROUND, reachable


def test_a_wildcard_address_is_advertised_as_this_hosts() -> None:
    for wildcard in ("http://0.0.0.0:9000", "http://[::]:9000"):
        advertised = reachable(wildcard)
        assert advertised.startswith("http://")
        assert advertised.endswith(":9000")
        assert "0.0.0.0" not in advertised
        assert "[::]" not in advertised
    assert reachable("http://127.0.0.1:9001") == "http://127.0.0.1:9001"
    assert reachable("http://10.1.2.3:9000") == "http://10.1.2.3:9000"


def test_one_node_on_the_sqlite_file_lists_itself(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        async with serving(config_of(basic("echo"))) as service:
            background = service.app[BACKGROUND]
            cluster = background.cluster
            assert cluster is not None
            assert not cluster.forwarding  # processes on one file share no limits
            assert service.app[API].cluster is cluster
            assert cluster.target("echo") is None
            async with (
                aiohttp.ClientSession() as session,
                session.get(service.url + "/warmstart/nodes") as response,
            ):
                found = await response.json()
            assert response.status == 200
            assert found["NodeId"] == background.node_id
            (me,) = found["Nodes"]
            assert me["Self"] is True
            assert me["Url"] == service.url
            assert me["FreeEnvironments"] > 0
            assert background.tokens is None  # no cluster-wide limits without Redis
            assert background.engine.admission is None

    arun(main())
