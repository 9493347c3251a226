"""Throughput of the default encoder, through the library and as raw onnxruntime on the same network.

    python benchmarks/encoder.py [--seconds 10] [--threads 2] [--batches 1,16] [--rounds 1] [--json]

The library path includes OpenCV resizing of 640x480 photos to 224x224 and L2 normalisation;
the raw path feeds ready 224x224 tensors to the same ONNX model. With several rounds the batch sizes run
in alternating order, and each figure is the median of its rounds (machines here vary by 10-20 % from
minute to minute).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from imagesearch_pg.config import Settings  # noqa: E402
from imagesearch_pg.service_types import SERVICE_TYPES
from imagesearch_pg.vision.encoders import EncoderRegistry  # noqa: E402
from imagesearch_pg.vision.sessions import cpu_session  # noqa: E402

DEFAULT_ENCODER = SERVICE_TYPES["generic"].default_encoder  # the built-in model the service defaults to


def measure(run, batch: int, seconds: float) -> float:
    run()  # warm-up
    done, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        run()
        done += batch
    return done / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring time per case")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    parser.add_argument("--batches", default="1,16", help="batch sizes, comma-separated")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]

    encoder = EncoderRegistry(Settings.from_env().model_cache, args.threads).get(DEFAULT_ENCODER)
    rng = np.random.default_rng(0)
    photos = [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8) for _ in range(max(batches))]
    session = cpu_session(encoder.model_path(), args.threads)
    tensors = rng.standard_normal((max(batches), 3, 224, 224)).astype(np.float32)

    measured: dict[str, list[float]] = {}
    for number in range(args.rounds):
        for batch in batches if number % 2 == 0 else batches[::-1]:
            measured.setdefault(f"library_batch{batch}_img_per_s", []).append(
                measure(lambda: encoder.predict(photos[:batch]), batch, args.seconds))
            measured.setdefault(f"raw_onnxruntime_batch{batch}_img_per_s", []).append(
                measure(lambda: session.run(["features"], {"image": tensors[:batch]}), batch, args.seconds))
    results = {"threads": args.threads, "encoder": encoder.name, "rounds": args.rounds,
               **{key: round(statistics.median(values), 1) for key, values in sorted(measured.items())}}
    print(json.dumps(results) if args.json else "\n".join(f"{k}: {v}" for k, v in results.items()))


if __name__ == "__main__":
    main()
