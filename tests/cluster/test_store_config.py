"""Choosing the store: ``[store]``, ``--store`` / ``$WARMSTART_STORE``, ``--node-id`` /
``$WARMSTART_NODE_ID``, ``$WARMSTART_ADVERTISE_URL``; bad values refused with their key; a
Redis that would lose accepted work refused at startup."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis_support import RedisServer, free_port, need_redis
from service_support import warmstart

from runtime import configfile
from runtime.cli.functions import with_store
from runtime.configfile import ConfigFile, ConfigFileError, StoreConfig
from runtime.errors import InvalidParameterValueException, ServiceException
from runtime.stores import open_stores


def _load(tmp_path: Path, text: str) -> ConfigFile:
    path = tmp_path / "warmstart.toml"
    path.write_text(text)
    return configfile.load(path)


def test_without_a_url_the_sqlite_file(tmp_path: Path) -> None:
    store = _load(tmp_path, "").store
    assert store == StoreConfig()
    assert not store.shared
    stores = open_stores(store, tmp_path)
    try:
        assert not stores.shared
        assert stores.location == str(tmp_path / "batch.sqlite3")
    finally:
        stores.close()


def test_the_store_table(tmp_path: Path) -> None:
    store = _load(
        tmp_path,
        '[store]\nurl = "redis://10.0.0.1:6380/2"\nprefix = "blue"\nlease_s = 3\n'
        'node_id = "pod-1"\nadvertise_url = "http://10.0.0.7:9000"\n',
    ).store
    assert store.url == "redis://10.0.0.1:6380/2"
    assert (store.prefix, store.lease_s, store.node_id) == ("blue", 3.0, "pod-1")
    assert store.advertise_url == "http://10.0.0.7:9000"
    assert store.shared


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('url = "http://10.0.0.1:6379"', "is not a Redis URL"),
        ('prefix = "a b"', "prefix: 1-64 letters"),
        ("lease_s = 0", "lease_s"),
        ('node_id = "a b"', "node_id"),
        ('advertise_url = "10.0.0.1:9000"', "advertise_url"),
        ("ttl = 3", "unknown key"),
    ],
)
def test_bad_settings_name_their_key(tmp_path: Path, text: str, reason: str) -> None:
    with pytest.raises(ConfigFileError, match="store") as refused:
        _load(tmp_path, f"[store]\n{text}\n")
    assert reason in str(refused.value)


def test_the_command_line_and_the_environment_win(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _load(tmp_path, '[store]\nurl = "redis://file:6379/0"\nnode_id = "file"\n')
    assert with_store(config, None, None) is config
    monkeypatch.setenv("WARMSTART_STORE", "redis://env:6379/0")
    monkeypatch.setenv("WARMSTART_NODE_ID", "env")
    monkeypatch.setenv("WARMSTART_ADVERTISE_URL", "http://env:9000")
    from_env = with_store(config, None, None).store
    assert (from_env.url, from_env.node_id) == ("redis://env:6379/0", "env")
    assert from_env.advertise_url == "http://env:9000"
    flagged = with_store(config, "redis://flag:6379/1", "flag").store
    assert (flagged.url, flagged.node_id) == ("redis://flag:6379/1", "flag")
    with pytest.raises(InvalidParameterValueException, match="not a Redis URL"):
        with_store(config, "https://nope", None)


def test_serve_refuses_a_bad_store_url(tmp_path: Path) -> None:
    done = warmstart("serve", "--port", "0", "--store", "http://127.0.0.1:1")
    assert done.returncode == 2
    assert "InvalidParameterValueException" in done.stderr
    assert "is not a Redis URL" in done.stderr


def test_a_redis_without_its_append_only_file_is_refused(tmp_path: Path) -> None:
    need_redis()
    server = RedisServer(tmp_path / "redis", append_only=False).start()
    try:
        with pytest.raises(ServiceException, match="appendonly no"):
            open_stores(StoreConfig(url=server.url), tmp_path)
        stores = open_stores(StoreConfig(url=server.url, require_append_only=False), tmp_path)
        assert stores.shared
        stores.close()
    finally:
        server.stop()


def test_an_unreachable_redis_is_a_clear_error(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    with pytest.raises(ServiceException, match="unreachable"):
        open_stores(StoreConfig(url=url), tmp_path)
