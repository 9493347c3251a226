"""What a Crop=false batch import does besides encoding, measured on one thread, alone and beside the encoder.

    python benchmarks/import_costs.py [--pictures 3000] [--rounds 2] [--json FILE]

On the batch benchmark's pictures (benchmarks/batch_import.py's sets), CPU per picture of:
- intake: read_picture (decode, limits, EXIF turn) and the thumbnail, from bytes in memory, on one thread,
  alone and while the encoder runs ENCODING_STREAMS batches at once on the other threads (what sharing the
  cores and caches costs it);
- decoding with Pillow (what intake uses) against OpenCV's imdecode;
- the encoder in BATCH-picture runs with 1 or 2 onnxruntime threads and 1 or 2 streams at once.
Rounds run in alternating order; each figure is the median of its rounds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.batch_import import SERVICE_TYPE, collect  # noqa: E402
from imagesearch_pg.config import Settings  # noqa: E402
from imagesearch_pg.service_types import SERVICE_TYPES  # noqa: E402
from imagesearch_pg.tasks.batch_import import ENCODING_STREAMS  # noqa: E402
from imagesearch_pg.vision import intake  # noqa: E402
from imagesearch_pg.vision.encoders import EncoderRegistry  # noqa: E402
from imagesearch_pg.vision.encoders.base import BATCH  # noqa: E402
from imagesearch_pg.vision.thumbnails import thumbnail  # noqa: E402

ENCODER = SERVICE_TYPES[SERVICE_TYPE].default_encoder


def cpu_ms_each(work, items) -> float:
    """This thread's CPU milliseconds per item of ``work(item)``."""
    began = time.thread_time()
    for item in items:
        work(item)
    return (time.thread_time() - began) / len(items) * 1000


def intake_work(data: bytes) -> None:
    thumbnail(intake.read_picture(data, SERVICE_TYPE))


def beside_encoder(encoder, images, measure):
    """``measure()`` while ENCODING_STREAMS threads run the encoder on ``images`` in BATCH-picture runs."""
    stop = threading.Event()

    def stream() -> None:
        at = 0
        while not stop.is_set():
            encoder.encode(images[at : at + BATCH])
            at = (at + BATCH) % (len(images) - BATCH)

    streams = [threading.Thread(target=stream) for _ in range(ENCODING_STREAMS)]
    for thread in streams:
        thread.start()
    time.sleep(1.0)  # the streams at full speed
    try:
        return measure()
    finally:
        stop.set()
        for thread in streams:
            thread.join()


def encoder_config(cache: Path, images, threads: int, streams: int, count: int) -> dict:
    """Pictures/s and process CPU ms per picture of ``streams`` threads encoding ``count`` pictures."""
    encoder = EncoderRegistry(cache, threads).get(ENCODER)
    encoder.encode(images[:BATCH])  # loaded and warm
    runs = count // BATCH

    def stream(first: int) -> None:
        for run in range(first, runs, streams):
            at = run * BATCH % (len(images) - BATCH)
            encoder.encode(images[at : at + BATCH])

    cpu, wall = time.process_time(), time.perf_counter()
    workers = [threading.Thread(target=stream, args=(first,)) for first in range(streams)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"pictures_per_s": runs * BATCH / wall, "cpu_ms_per_picture": cpu / (runs * BATCH) * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pictures", type=int, default=3000, help="pictures measured per case")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path, help="write the results here too")
    args = parser.parse_args()
    cv2.setNumThreads(1)  # as one reader thread would decode

    datas = [p["file"].read_bytes() for p in collect(args.pictures)]
    images = [intake.read_picture(data, SERVICE_TYPE) for data in datas[:400]]
    cache = Settings.from_env().model_cache
    encoder = EncoderRegistry(cache, 2).get(ENCODER)
    encoder.encode(images[:BATCH])
    configs = [(1, 1), (2, 1), (1, 2), (2, 2)]
    measured: dict[str, list[float]] = {}

    def add(key: str, value: float) -> None:
        measured.setdefault(key, []).append(value)

    for number in range(args.rounds):
        add("intake_alone_ms", cpu_ms_each(intake_work, datas))
        add("intake_beside_encoder_ms", beside_encoder(encoder, images, lambda: cpu_ms_each(intake_work, datas)))
        add("decode_pillow_ms", cpu_ms_each(lambda d: intake.read_picture(d, SERVICE_TYPE), datas))
        add("decode_opencv_ms", cpu_ms_each(
            lambda d: cv2.imdecode(np.frombuffer(d, np.uint8), cv2.IMREAD_COLOR_RGB), datas))
        for threads, streams in configs if number % 2 == 0 else configs[::-1]:
            result = encoder_config(cache, images, threads, streams, min(args.pictures, 1200))
            for name, value in result.items():
                add(f"encoder_{threads}thread_{streams}stream_{name}", value)
    results = {"pictures": len(datas), "rounds": args.rounds, "batch": BATCH,
               **{key: round(statistics.median(values), 3) for key, values in measured.items()}}
    print("\n".join(f"{key}: {value}" for key, value in results.items()))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
