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
import itertools
import json
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.batch_import import SERVICE_TYPE, collect  # noqa: E402
from imagesearch_pg.config import Settings  # noqa: E402
from imagesearch_pg.service_types import SERVICE_TYPES  # noqa: E402
from imagesearch_pg.tasks.batch_import import ENCODING_STREAMS, overlapped  # noqa: E402
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


def encoded_in_streams(encoder, batches, streams: int) -> None:
    """The batches encoded ``streams`` at once, as the task describes them (batch_import.overlapped)."""
    with ThreadPoolExecutor(streams, thread_name_prefix="costs-encode") as pool:
        for _ in overlapped(batches, encoder.encode, pool, streams):
            pass


def beside_encoder(encoder, batches, measure):
    """``measure()`` while the encoder runs ENCODING_STREAMS of ``batches`` at once, round and round."""
    stop = threading.Event()
    endless = itertools.takewhile(lambda _: not stop.is_set(), itertools.cycle(batches))
    running = threading.Thread(target=encoded_in_streams, args=(encoder, endless, ENCODING_STREAMS))
    running.start()
    time.sleep(1.0)  # the streams at full speed
    try:
        return measure()
    finally:
        stop.set()
        running.join()


def encoder_config(cache: Path, batches, threads: int, streams: int) -> dict:
    """Pictures/s and process CPU ms per picture of the encoder with ``threads`` onnxruntime threads
    encoding ``batches``, ``streams`` at once."""
    encoder = EncoderRegistry(cache, threads).get(ENCODER)
    encoder.encode(batches[0])  # loaded and warm
    cpu, wall = time.process_time(), time.perf_counter()
    encoded_in_streams(encoder, batches, streams)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    count = sum(map(len, batches))
    return {"pictures_per_s": count / wall, "cpu_ms_per_picture": cpu / count * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pictures", type=int, default=3000, help="pictures measured per case")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path, help="write the results here too")
    args = parser.parse_args()
    cv2.setNumThreads(1)  # as one reader thread would decode

    datas = [p["file"].read_bytes() for p in collect(args.pictures)]
    images = [intake.read_picture(data, SERVICE_TYPE) for data in datas[:400]]
    batches = [images[at:at + BATCH] for at in range(0, len(images) - BATCH + 1, BATCH)]
    cache = Settings.from_env().model_cache
    encoder = EncoderRegistry(cache, 2).get(ENCODER)  # the task's sessions
    encoder.encode(batches[0])
    timed = list(itertools.islice(itertools.cycle(batches), min(args.pictures, 1200) // BATCH))
    configs = [(1, 1), (2, 1), (1, 2), (2, 2)]
    measured: dict[str, list[float]] = {}

    def add(key: str, value: float) -> None:
        measured.setdefault(key, []).append(value)

    for number in range(args.rounds):
        add("intake_alone_ms", cpu_ms_each(intake_work, datas))
        add("intake_beside_encoder_ms", beside_encoder(encoder, batches, lambda: cpu_ms_each(intake_work, datas)))
        add("decode_pillow_ms", cpu_ms_each(lambda d: intake.read_picture(d, SERVICE_TYPE), datas))
        add("decode_opencv_ms", cpu_ms_each(
            lambda d: cv2.imdecode(np.frombuffer(d, np.uint8), cv2.IMREAD_COLOR_RGB), datas))
        for threads, streams in configs if number % 2 == 0 else configs[::-1]:
            result = encoder_config(cache, timed, threads, streams)
            for name, value in result.items():
                add(f"encoder_{threads}thread_{streams}stream_{name}", value)
    results = {"pictures": len(datas), "rounds": args.rounds, "batch": BATCH,
               **{key: round(statistics.median(values), 3) for key, values in measured.items()}}
    print("\n".join(f"{key}: {value}" for key, value in results.items()))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
