"""A store whose schema version is not one any qnb writes ('abc', '', '3.5', a blob):
a StoreError naming the file and what to do (it was a raw ValueError from int()), and
the file left as it was."""

from __future__ import annotations

import sqlite3

import pytest

import qnb
from qnb import _manager
from qnb._store import SCHEMA_VERSION, Store


def _store_with_version(path, value) -> None:
    Store(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (value,))


def _tables(path) -> list[str]:
    with sqlite3.connect(path) as db:
        return sorted(row[0] for row in db.execute("SELECT name FROM sqlite_master"))


@pytest.mark.parametrize("value", ["abc", "", "3.5", "-1", "0", b"\x03"], ids=repr)
def test_a_schema_version_no_qnb_writes_is_a_clear_store_error(tmp_path, value):
    path = tmp_path / "qnb.sqlite3"
    _store_with_version(path, value)
    before = _tables(path)
    with pytest.raises(qnb.StoreError) as caught:
        Store(path)
    message = str(caught.value)
    assert f"the job store {path} has the schema version {value!r}, which no qnb writes" in message
    assert f"mv {path} {path}.bad" in message and "QNB_HOME" in message
    assert not isinstance(caught.value, ValueError)  # the raw int() error is gone
    with sqlite3.connect(path) as db:  # nothing written over it
        assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == (value,)
    assert _tables(path) == before


def test_a_new_process_on_such_a_store_says_the_same(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    _store_with_version(home / "qnb.sqlite3", "abc")
    with pytest.raises(qnb.StoreError, match=r"schema version 'abc'.*mv .*qnb\.sqlite3\.bad"):
        _manager.JobManager(home)


@pytest.mark.parametrize("value", [str(SCHEMA_VERSION), f" {SCHEMA_VERSION} ", "1"])
def test_whole_numbers_are_still_read(tmp_path, value):
    path = tmp_path / "qnb.sqlite3"
    _store_with_version(path, value)
    Store(path).close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == (str(SCHEMA_VERSION),)
