"""The README: "Each instance has its own partition and HNSW index (cosine, m=16, ef_construction=64)". Every way
an instance's vector indexes come to be is read back from the catalogue: a new instance's (and a trademark
instance's silhouette index), the rebuild after a bulk load, and the build at the end of a batch import that
deferred it. The numbers are written here, not read from the code or the SQL files."""

from __future__ import annotations

import os

import numpy as np
import pytest
import sqlalchemy as sa

from imagesearch_pg.store import pictures as picture_store
from imagesearch_pg.store.tables import partition_name, tasks as task_table
from tests.batch_folders import write_folder
from tests.small_vectors import instance_id, load, register_small_encoder, unit
from tests.task_runs import run_now

SHIPPED = {"access method": "hnsw", "operator class": "halfvec_cosine_ops",
           "options": ["m=16", "ef_construction=64"]}

_INDEXES = sa.text("""
    SELECT a.attname AS column_name, am.amname, opc.opcname, c.reloptions,
           pg_get_indexdef(c.oid, 1, true) AS expression
    FROM pg_index i
    JOIN pg_class c ON c.oid = i.indexrelid
    JOIN pg_class t ON t.oid = i.indrelid
    JOIN pg_namespace n ON n.oid = t.relnamespace
    JOIN pg_am am ON am.oid = c.relam
    JOIN pg_opclass opc ON opc.oid = i.indclass[0]
    JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid
                        AND d.refclassid = 'pg_class'::regclass AND d.refobjid = t.oid
                        AND d.refobjsubid > 0
    JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
    JOIN pg_type ty ON ty.oid = a.atttypid
    WHERE n.nspname = 'imagesearch' AND t.relname = :partition AND ty.typname IN ('vector', 'halfvec')
    ORDER BY a.attname""")


def vector_indexes(engine, instance: int) -> dict[str, dict]:
    """The partition's indexes of vector columns, by the column they index: access method, operator class,
    options and the indexed expression."""
    with engine.connect() as conn:
        rows = conn.execute(_INDEXES, {"partition": partition_name(instance)}).all()
    return {row.column_name: {"access method": row.amname, "operator class": row.opcname,
                              "options": sorted(row.reloptions or [], reverse=True), "expression": row.expression}
            for row in rows}


def assert_shipped(indexes: dict[str, dict], dim: int, columns: tuple[str, ...] = ("embedding",)) -> None:
    assert sorted(indexes) == sorted(columns), indexes
    for column in columns:
        found = dict(indexes[column])
        assert found.pop("expression") == f"({column}::halfvec({dim}))"
        assert found == SHIPPED, column


def test_a_new_instance_has_the_shipped_index(service, engine, make_instance):
    assert_shipped(vector_indexes(engine, instance_id(service, make_instance("generic").name)), 1280)


def test_a_trademark_instance_has_the_shipped_index_on_its_silhouettes_too(service, engine, make_instance):
    assert_shipped(vector_indexes(engine, instance_id(service, make_instance("trademark").name)), 1280,
                   ("embedding", "silhouette"))


def test_a_bulk_load_rebuilds_the_shipped_index(service, engine, make_instance, tmp_path):
    name = make_instance("generic", encoder=register_small_encoder(service, tmp_path, 24)).name
    vectors = unit(np.random.default_rng(9).random((300, 24)) + 0.1)
    assert load(service, name, ((f"p{i}", "n", 0, v) for i, v in enumerate(vectors))) == 300
    indexes = vector_indexes(engine, instance_id(service, name))
    assert_shipped(indexes, 24)


@pytest.fixture
def local(service, tmp_path):
    name = f"index-params-{os.getpid()}-{tmp_path.name}"
    service.storage.add(name, str(tmp_path))
    yield name, tmp_path
    service.storage.remove(name)


def test_a_batch_that_deferred_its_index_builds_the_shipped_one(service, engine, make_instance, local):
    """As the run that resumes a batch which dropped the index to build it once at the end (its checkpoint says
    so) does: the index it builds is the shipped one."""
    location, root = local
    path = write_folder(root, [{"OperationType": "DELETE", "ProductId": "x"}] * 3, {})
    size = (root / path.lstrip("/") / "increment.meta").stat().st_size
    name = make_instance("generic").name
    task = service.tasks.submit_import(name, location, path)
    instance = instance_id(service, name)
    with engine.begin() as conn:
        picture_store.drop_vector_indexes(conn, instance, False)
        conn.execute(sa.update(task_table).where(task_table.c.id == task.id).values(
            checkpoint={"line": 0, "offset": 0, "size": size, "deferred_index": True}))
    assert vector_indexes(engine, instance) == {}
    ended = run_now(service, task)
    assert ended.state == "succeeded", (ended.error_code, ended.error_message)
    assert_shipped(vector_indexes(engine, instance), 1280)
