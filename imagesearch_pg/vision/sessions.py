"""ONNX Runtime sessions, kept apart from the models that use them."""

from __future__ import annotations

from pathlib import Path


def cpu_session(model_path: Path, threads: int):
    # Imported here, not at module level: a process that has imported onnxruntime and then forks
    # (gunicorn's master) leaves children that hang or abort on exit. Only workers import it.
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: the service's logs stay quiet
    # Idle worker threads would spin-wait after each run and steal the cores from the next model in
    # the pipeline (detector, then encoder): SearchImageByPic p50 went from 82 to 66 ms (docs/benchmarks.md).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(model_path), sess_options=options, providers=["CPUExecutionProvider"])
