"""Instances of a small registered encoder, bulk-loaded with chosen vectors: tens of thousands of pictures load
and index in seconds, where the default encoder's 1280-d vectors would take minutes on a shared machine."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnx
import sqlalchemy as sa
from onnx import TensorProto, helper

from imagesearch_pg.store import bulk_load
from imagesearch_pg.store.tables import instances


def register_small_encoder(service, folder: Path, dim: int) -> str:
    """Register, under a name new to this run, an ONNX encoder of ``dim`` numbers (each channel's mean,
    projected by a fixed matrix); returns its name."""
    name = f"small{dim}-{uuid.uuid4().hex[:10]}"
    weights = np.random.default_rng(dim).random((3, dim)).astype(np.float32) + 0.1
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["pixels", "axes"], ["colour"], keepdims=0),
         helper.make_node("MatMul", ["colour", "weights"], ["embedding"])],
        name,
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", 32, 32, 3])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", dim])],
        [helper.make_tensor("axes", TensorProto.INT64, [2], [1, 2]),
         helper.make_tensor("weights", TensorProto.FLOAT, [3, dim], weights.ravel().tolist())],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, folder / f"{name}.onnx")
    spec = {"name": name, "onnx": f"{name}.onnx", "dim": dim, "output": "embedding", "input_size": 32,
            "layout": "NHWC", "channel_order": "RGB", "scale": 1 / 255, "mean": 0.0, "std": 1.0}
    (folder / f"{name}.json").write_text(json.dumps(spec))
    service.register_encoder(folder / f"{name}.json")
    return name


def instance_id(service, name: str) -> int:
    with service.database.reading() as conn:
        return conn.execute(sa.select(instances.c.id).where(instances.c.name == name)).scalar_one()


def load(service, name: str, rows: Iterable[tuple], columns: tuple = bulk_load.BULK_COLUMNS) -> int:
    """Bulk-load ``rows`` (tuples of ``columns``) into instance ``name``, as `imagesearch` loads many pictures."""
    with service.database.transaction() as conn:
        return bulk_load.bulk_load(conn, instance_id(service, name), rows, columns=columns)


def unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, np.float32)
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)
