"""Batch import (IncreaseInstance) of real pictures end to end, beside the work it is made of.

    IMAGESEARCH_HOME=/work/benchruns/batch-home \\
    python benchmarks/batch_import.py [--limit N] [--source local|s3|both] [--modes crop,nocrop] [--sample 500]
        [--rounds 1] [--columns a,b,c,import] [--keep] [--home DIR] [--json FILE]
        [--chunk-lines N] [--readers N] [--ahead N] [--streams N] [--batch N]
        # the levers override the library's constants for the run

The pictures are every file of the real sets under ~/.cache/imagesearch-bench/bench/ (logo-simple-icons,
logo-logos, flat-color-icons: gallery marks on white as PNG, easy queries and hard ones pasted on photos as
JPEG, all 224x224; 10,520 files), shuffled with a fixed seed so that any --limit keeps the mix and every
chunk of lines holds both kinds. Each is one ADD line of an increment.meta (ProductId "<set>-<n>", PicName
"<set>/<path>", IntAttr, StrAttr); the "nocrop" mode writes every line with "Crop": false.

Columns, each measured in the same process, on the same pictures, in every round (a round runs, per mode:
pipeline alone, import from the local folder, AddImage, import from S3, encoder alone; the next round runs
them in the reverse order, so load on the shared machine falls on all alike):
- import local / import s3: `service.tasks.submit_import` into a new `generic` instance, then a `Worker` in a
  thread of this process running that task (as tests/batch_folders.run_to_end). The folder is a temporary
  local folder, or a bucket of a moto_server started on loopback by this script (uploaded with boto3 before,
  not timed). pictures/s = pictures added / wall time from submit to the task's end as seen by polling;
  the task's own rate (started_at -> finished_at) and its per-stage seconds (progress.seconds: read,
  decode_detect, encode, write; summed over the threads doing each) are reported too, with the time after
  the last chunk (the HNSW index built once at the end when the task deferred it) and the CPU seconds of
  this process, of PostgreSQL's processes and of moto_server over the column.
- (a) pipeline alone (no database, pictures already in memory): exactly the task's prepare step
  (batch_import._Import.prepared): chunks of CHUNK_LINES in encoder batches of BATCH pictures, each framed by
  PicturePipeline.framed on READERS threads (batch_import.framed_ahead) while PicturePipeline.prepare_stored
  describes the batches before it, ENCODING_STREAMS at once (batch_import.overlapped).
- (b) AddImage: `service.add_image` one picture at a time on the first --sample pictures (the same crop).
- (c) encoder alone (nocrop mode): the instance's encoder `encode()` on the pictures decoded before, in the
  batches describe_many makes (BATCH pictures of each chunk), twice: ENCODING_STREAMS batches at once as the
  task runs them, and one at a time. "vs (c)" is against the faster of the two.

stdout gets a short table; --json FILE also writes every figure as JSON. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

BENCH = Path("~/.cache/imagesearch-bench/bench").expanduser()
SETS = ("logo-simple-icons", "logo-logos", "flat-color-icons")
SERVICE_TYPE = "generic"
MOTO_KEY_ID, MOTO_SECRET = "bench-key-id", "bench-secret-access-key"  # moto accepts any pair


def log(*parts) -> None:
    print(*parts, file=sys.stderr, flush=True)


# ---- the pictures -----------------------------------------------------------------------------------------


def collect(limit: int | None) -> list[dict]:
    """Every picture of the sets' manifests (gallery and every query split), shuffled (seed 13)."""
    found = []
    for set_name in SETS:
        manifest = json.loads((BENCH / set_name / "manifest.json").read_text())
        paths = [g["path"] for g in manifest["gallery"]]
        paths += [q["path"] for split in manifest["queries"].values() for q in split]
        found += [(set_name, path) for path in dict.fromkeys(paths)]
    random.Random(13).shuffle(found)
    pictures = []
    for n, (set_name, path) in enumerate(found[:limit] if limit else found):
        pictures.append({"set": set_name, "file": BENCH / set_name / path, "pic_name": f"{set_name}/{path}",
                         "product_id": f"{set_name}-{n}", "int_attr": n % 1000})
    return pictures


def meta_lines(pictures: list[dict], crop: bool) -> bytes:
    lines = []
    for p in pictures:
        line = {"OperationType": "ADD", "ProductId": p["product_id"], "PicName": p["pic_name"],
                "IntAttr": p["int_attr"], "StrAttr": p["set"]}
        if not crop:
            line["Crop"] = False
        lines.append(json.dumps(line))
    return ("\n".join(lines) + "\n").encode()


# ---- CPU of the processes that share the work -------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()  # fields from the state on (field 3)


def process_cpu(pid: int, children: bool = False) -> float:
    fields = _stat(pid)
    if fields is None:
        return 0.0
    ticks = int(fields[11]) + int(fields[12]) + ((int(fields[13]) + int(fields[14])) if children else 0)
    return ticks / _TICK


def postgres_cpu(pgdata: Path | None) -> float | None:
    """CPU seconds of the embedded server so far: the postmaster with its ended children, plus its live ones."""
    if pgdata is None:
        return None
    try:
        postmaster = int((pgdata / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    total = process_cpu(postmaster, children=True)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None and int(fields[1]) == postmaster:
                total += process_cpu(int(entry.name))
    return total


def stolen_cpu() -> float | None:
    """CPU seconds the hypervisor gave other guests so far (steal, /proc/stat), summed over the cores: a
    column during which it grows ran on a machine slower than the others'."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
        return int(fields[8]) / _TICK
    except (OSError, IndexError, ValueError):
        return None


class Meter:
    """Wall time, load average and CPU seconds (this process, PostgreSQL, moto_server, stolen by the
    hypervisor) over a column."""

    def __init__(self, pgdata: Path | None, moto_pid: int | None):
        self.pgdata, self.moto_pid = pgdata, moto_pid

    def __enter__(self):
        self.figures: dict = {"load_before": round(os.getloadavg()[0], 2)}
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self._cpu = usage.ru_utime + usage.ru_stime
        self._pg = postgres_cpu(self.pgdata)
        self._moto = process_cpu(self.moto_pid) if self.moto_pid else None
        self._stolen = stolen_cpu()
        self._began = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        wall = time.perf_counter() - self._began
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self.figures.update(wall_s=round(wall, 2), load_after=round(os.getloadavg()[0], 2),
                            cpu_s=round(usage.ru_utime + usage.ru_stime - self._cpu, 1))
        pg = postgres_cpu(self.pgdata)
        if pg is not None and self._pg is not None:
            self.figures["postgres_cpu_s"] = round(pg - self._pg, 1)
        if self._moto is not None:
            self.figures["moto_cpu_s"] = round(process_cpu(self.moto_pid) - self._moto, 1)
        stolen = stolen_cpu()
        if stolen is not None and self._stolen is not None:
            self.figures["stolen_cpu_s"] = round(stolen - self._stolen, 1)


# ---- a real S3-compatible server on loopback ---------------------------------------------------------------


class Moto:
    """moto_server on a free loopback port (as tests/s3_server.py starts it), with a boto3 client."""

    def __init__(self):
        import boto3

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self._log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
            stdout=self._log, stderr=subprocess.STDOUT)
        self.endpoint = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(self.endpoint + "/moto-api/", timeout=1).close()
                break
            except urllib.error.HTTPError:
                break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"moto_server did not start on {self.endpoint}")
                time.sleep(0.1)
        self.client = boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=MOTO_KEY_ID,
                                   aws_secret_access_key=MOTO_SECRET, region_name="us-east-1")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


# ---- the columns ----------------------------------------------------------------------------------------


def run_import(service, instance_name: str, location: str, meter: Meter) -> dict:
    """Submit the import and run it with a Worker of its own until it ends (tests/batch_folders.run_to_end)."""
    from imagesearch_pg.store.tasks import FINAL_STATES
    from imagesearch_pg.tasks.worker import Worker

    with meter:
        task = service.tasks.submit_import(instance_name, location, "/")
        stop = threading.Event()
        worker = Worker(service, only=task.id)  # woken by the submit's NOTIFY
        thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
        thread.start()
        try:
            while (task := service.tasks.get(task.id)).state not in FINAL_STATES:
                time.sleep(0.25)  # often enough for the wall time, rarely enough to cost nothing
        finally:
            stop.set()
        wall = time.perf_counter() - meter._began
    thread.join(timeout=60)
    progress = task.progress
    added = progress.get("added", 0) + progress.get("replaced", 0)
    reasons: dict[str, int] = {}
    for line in service.tasks.error_report(task.id):
        reason = json.loads(line)["reason"]
        reasons[reason[:120]] = reasons.get(reason[:120], 0) + 1
    task_seconds = (task.finished_at - task.started_at).total_seconds()
    chunks_seconds = added / progress["pictures_per_second"] if progress.get("pictures_per_second") else None
    return {
        "state": task.state, "lines": progress.get("total"), "added": added, "failed": progress.get("failed"),
        "failed_reasons": reasons, "stored": service.describe_instance(instance_name).picture_count,
        "pictures_per_s": round(added / wall, 2), "task_s": round(task_seconds, 2),
        "task_pictures_per_s": round(added / task_seconds, 2),
        "progress_pictures_per_s": progress.get("pictures_per_second"),
        # After the last chunk's commit: the deferred index build (if the task deferred it) and the finish.
        "after_last_chunk_s": None if chunks_seconds is None else round(task_seconds - chunks_seconds, 2),
        "stage_s": progress.get("seconds"), **meter.figures,
    }


def pipeline_alone(service, instance, datas: list[bytes], crop: bool, meter: Meter) -> dict:
    """(a): the task's prepare step (batch_import._Import.prepared) with no database and no storage: chunks
    of CHUNK_LINES in encoder batches of BATCH pictures, framed on READERS threads (framed_ahead) while the
    batches before are described by prepare_stored, ENCODING_STREAMS at once (overlapped)."""
    from imagesearch_pg.errors import ImageSearchError
    from imagesearch_pg.tasks import batch_import

    pipeline = service.pipeline
    spent = {"decode_detect": 0.0, "encode": 0.0}
    refused = 0
    lock = threading.Lock()

    def framed(data):
        began = time.perf_counter()
        try:
            return pipeline.framed(instance, data, crop=crop, region=None, alongside=True)
        except ImageSearchError:
            return None
        finally:
            with lock:
                spent["decode_detect"] += time.perf_counter() - began

    def described(framed_group):
        began = time.perf_counter()
        ready = [frame for frame in framed_group[2] if frame is not None]
        pipeline.prepare_stored(instance, ready, readers)
        with lock:
            spent["encode"] += time.perf_counter() - began
        return len(framed_group[2]) - len(ready)

    # The task's own streams: a chunk's pictures in encoder batches, framed FRAMED_AHEAD batches ahead,
    # ENCODING_STREAMS batches described at once.
    chunks = [datas[start:start + batch_import.CHUNK_LINES] for start in range(0, len(datas), batch_import.CHUNK_LINES)]
    groups = ((None, chunk[at:at + batch_import.BATCH]) for chunk in chunks
              for at in range(0, len(chunk), batch_import.BATCH))
    with meter, ThreadPoolExecutor(batch_import.READERS, thread_name_prefix="bench-read") as readers, \
            ThreadPoolExecutor(batch_import.ENCODING_STREAMS, thread_name_prefix="bench-encode") as encoding:
        framed_groups = batch_import.framed_ahead(groups, framed, readers)
        for _, failed in batch_import.overlapped(framed_groups, described, encoding, batch_import.ENCODING_STREAMS):
            refused += failed
    done = len(datas) - refused
    return {"pictures": done, "refused": refused, "pictures_per_s": round(done / meter.figures["wall_s"], 2),
            "stage_s": {k: round(v, 2) for k, v in spent.items()}, **meter.figures}


def add_image_one_by_one(service, instance_name: str, sample: list[dict], datas: list[bytes], crop: bool,
                         meter: Meter) -> dict:
    """(b): AddImage, one picture at a time."""
    from imagesearch_pg.attributes import Attributes
    from imagesearch_pg.errors import ImageSearchError

    added = refused = 0
    with meter:
        for p, data in zip(sample, datas):
            try:
                service.add_image(instance_name, p["product_id"], p["pic_name"], data, crop=crop,
                                  attributes=Attributes(int_attr=p["int_attr"], str_attr=p["set"]))
                added += 1
            except ImageSearchError:
                refused += 1
    return {"pictures": added, "refused": refused, "pictures_per_s": round(added / meter.figures["wall_s"], 2),
            **meter.figures}


def encoder_alone(service, instance, datas: list[bytes], meter: Meter, streams: int) -> dict:
    """(c): the encoder's encode() on decoded whole pictures, in describe_many's batches (BATCH pictures of
    each chunk), ``streams`` batches at once as the task runs them (overlapped); decoding untimed."""
    from imagesearch_pg.errors import ImageSearchError
    from imagesearch_pg.tasks import batch_import
    from imagesearch_pg.vision import intake, transforms
    from imagesearch_pg.vision.encoders import base
    from imagesearch_pg.vision.subject import whole

    encoder = service.encoders.get(instance.encoder)
    batches = []
    for start in range(0, len(datas), batch_import.CHUNK_LINES):
        images = []
        for data in datas[start:start + batch_import.CHUNK_LINES]:
            try:
                images.append(intake.read_picture(data, instance.service_type))
            except ImageSearchError:
                pass
        batches += [[transforms.crop(image, whole(*image.shape[:2])) for image in images[at:at + base.BATCH]]
                    for at in range(0, len(images), base.BATCH)]
    with meter, ThreadPoolExecutor(streams, thread_name_prefix="bench-encode") as encoding:
        for _ in batch_import.overlapped(batches, encoder.encode, encoding, streams):
            pass
    encoded = sum(map(len, batches))
    return {"pictures": encoded, "streams": streams, "pictures_per_s": round(encoded / meter.figures["wall_s"], 2),
            **meter.figures}


# ---- the run ----------------------------------------------------------------------------------------------

CODE = ("imagesearch_pg/tasks/batch_import.py", "imagesearch_pg/tasks/metadata_export.py",
        "imagesearch_pg/service/picture_pipeline.py", "imagesearch_pg/service/pictures.py",
        "imagesearch_pg/store/pictures.py", "imagesearch_pg/storage/locations.py",
        "imagesearch_pg/vision/encoders/base.py")


def code_digests() -> dict:
    """The first 12 hex digits of the SHA-256 of the library files on the measured path: which code the
    figures are of."""
    import hashlib

    root = Path(__file__).resolve().parent.parent
    return {name: hashlib.sha256((root / name).read_bytes()).hexdigest()[:12] for name in CODE
            if (root / name).exists()}



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, help="only the first N pictures (of the shuffled 10,520)")
    parser.add_argument("--source", choices=["local", "s3", "both"], default="both")
    parser.add_argument("--modes", default="crop,nocrop", help="crop (Crop true, the default), nocrop, or both")
    parser.add_argument("--sample", type=int, default=500, help="pictures added one at a time with AddImage (b)")
    parser.add_argument("--rounds", type=int, default=1, help="run every column this many times, order reversed "
                                                              "every other round")
    parser.add_argument("--columns", default="a,b,c,import", help="which columns to run (a, b, c, import)")
    parser.add_argument("--keep", action="store_true", help="keep the imported instances (names printed)")
    parser.add_argument("--home", help="IMAGESEARCH_HOME for this run (its own embedded database)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    parser.add_argument("--chunk-lines", type=int, help="override batch_import.CHUNK_LINES for this run")
    parser.add_argument("--readers", type=int, help="override batch_import.READERS for this run")
    parser.add_argument("--ahead", type=int, help="override batch_import.FRAMED_AHEAD for this run")
    parser.add_argument("--streams", type=int, help="override batch_import.ENCODING_STREAMS for this run")
    parser.add_argument("--batch", type=int, help="override BATCH (encoders.base and the task's groups) for this run")
    args = parser.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    wanted = set(args.columns.split(","))
    if args.sample <= 0:
        wanted.discard("b")
    if not set(modes) <= {"crop", "nocrop"}:
        parser.error("--modes takes crop, nocrop or crop,nocrop")
    if args.home:
        os.environ["IMAGESEARCH_HOME"] = str(Path(args.home).expanduser().resolve())

    from imagesearch_pg.service import ImageSearch
    from imagesearch_pg.storage.filesystems import variable_names
    from imagesearch_pg.tasks import batch_import
    from imagesearch_pg.vision.encoders import base

    if args.chunk_lines:
        batch_import.CHUNK_LINES = args.chunk_lines
    if args.readers:
        batch_import.READERS = args.readers
    if args.ahead is not None:
        batch_import.FRAMED_AHEAD = args.ahead
    if args.streams:
        batch_import.ENCODING_STREAMS = args.streams
    if args.batch:  # the task's groups and describe_many's batches
        base.BATCH = batch_import.BATCH = args.batch
    sources = ["local", "s3"] if args.source == "both" else [args.source]

    pictures = collect(args.limit)
    datas = [p["file"].read_bytes() for p in pictures]
    sample = pictures[: args.sample]
    log(f"{len(pictures)} pictures ({sum(map(len, datas)) / 2**20:.0f} MB), modes {modes}, sources {sources}")

    service = ImageSearch.open()
    stamp = int(time.time())
    pgdata = service.settings.pgdata if service.database.is_embedded else None
    folder = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    moto = None
    locations: dict[str, str] = {}
    made: list[str] = []
    results: dict = {"pictures": len(pictures), "sets": {s: sum(p["set"] == s for p in pictures) for s in SETS},
                     "service_type": SERVICE_TYPE, "sample": len(sample), "nproc": os.cpu_count(),
                     "onnx_threads": service.settings.onnx_threads,
                     "constants": {"CHUNK_LINES": batch_import.CHUNK_LINES, "READERS": batch_import.READERS,
                                   "FRAMED_AHEAD": batch_import.FRAMED_AHEAD,
                                   "ENCODING_STREAMS": batch_import.ENCODING_STREAMS,
                                   "BATCH": base.BATCH,
                                   "DEFERRED_INDEX_LINES": getattr(batch_import, "DEFERRED_INDEX_LINES", None)},
                     "code": code_digests(),
                     "load_at_start": [round(v, 2) for v in os.getloadavg()], "rounds": []}
    try:
        # The local folder and the bucket hold the same files; increment.meta is rewritten for each mode.
        if "local" in sources:
            for p, data in zip(pictures, datas):
                (folder / p["pic_name"]).parent.mkdir(parents=True, exist_ok=True)
                (folder / p["pic_name"]).write_bytes(data)
            locations["local"] = f"bench-local-{stamp}"
            service.storage.add(locations["local"], str(folder))
        if "s3" in sources:
            moto = Moto()
            bucket = f"bench-batch-{stamp}"
            moto.client.create_bucket(Bucket=bucket)
            began = time.perf_counter()
            with ThreadPoolExecutor(8) as uploads:
                list(uploads.map(lambda pd: moto.client.put_object(Bucket=bucket, Key=pd[0]["pic_name"], Body=pd[1]),
                                 zip(pictures, datas)))
            log(f"uploaded {len(pictures)} pictures to {moto.endpoint} in {time.perf_counter() - began:.0f} s")
            locations["s3"] = f"bench-s3-{stamp}"
            key_var, secret_var, _ = variable_names(locations["s3"])
            os.environ[key_var], os.environ[secret_var] = MOTO_KEY_ID, MOTO_SECRET
            service.storage.add(locations["s3"], f"s3://{bucket}", endpoint=moto.endpoint, region="us-east-1")
        meter = Meter(pgdata, moto.process.pid if moto else None)

        def new_instance(label: str, capacity: int):
            name = f"bench-batch-{label}-{stamp}-{len(made)}"
            service.create_instance(name, SERVICE_TYPE, capacity=capacity + 10)
            made.append(name)
            return name

        def write_meta(crop: bool) -> None:
            raw = meta_lines(pictures, crop)
            if "local" in locations:
                (folder / "increment.meta").write_bytes(raw)
            if moto:
                moto.client.put_object(Bucket=bucket, Key="increment.meta", Body=raw)

        scratch = service.instances.current(new_instance("scratch", 0))
        # Warm-up, not timed: both models loaded, the first sessions' runs done.
        with ThreadPoolExecutor(1) as pool:
            service.pipeline.prepare_stored(scratch, [service.pipeline.framed(scratch, d, crop=True, region=None)
                                                      for d in datas[:32]], pool)

        for round_number in range(args.rounds):
            columns = []
            for mode in modes:
                crop = mode == "crop"
                steps = ["a", *(["import-local"] if "local" in sources else []), "b",
                         *(["import-s3"] if "s3" in sources else []), *(["c", "c-1"] if not crop else [])]
                steps = [s for s in steps if s.split("-")[0] in wanted]
                if round_number % 2:
                    steps.reverse()
                columns += [(mode, step) for step in steps]
            figures: dict = {}
            for mode, step in columns:
                crop = mode == "crop"
                log(f"round {round_number + 1}: {mode} {step} ...")
                if step.startswith("import-"):
                    source = step.split("-", 1)[1]
                    write_meta(crop)
                    name = new_instance(f"{mode}-{source}", len(pictures))
                    result = run_import(service, name, locations[source], meter)
                    if not args.keep:
                        service.delete_instance(name)
                        made.remove(name)
                    else:
                        result["instance"] = name
                elif step == "a":
                    result = pipeline_alone(service, scratch, datas, crop, meter)
                elif step == "b":
                    name = new_instance(f"{mode}-addimage", len(sample))
                    result = add_image_one_by_one(service, name, sample, datas[: len(sample)], crop, meter)
                    service.delete_instance(name)
                    made.remove(name)
                else:  # c: as many streams as the task runs; c-1: one
                    streams = 1 if step == "c-1" else batch_import.ENCODING_STREAMS
                    result = encoder_alone(service, scratch, datas, meter, streams)
                figures.setdefault(mode, {})[step] = result
                log(f"  {result['pictures_per_s']} pictures/s, wall {result['wall_s']} s, "
                    f"load {result['load_before']} -> {result['load_after']}"
                    + (f", stages {result['stage_s']}" if "stage_s" in result else ""))
            for mode, steps in figures.items():
                for step, result in steps.items():
                    if step.startswith("import-"):
                        for other in ("a", "b", "c"):
                            # vs (c): the encoder's faster way, one stream or the task's several
                            rates = [r["pictures_per_s"] for k, r in steps.items() if k.split("-")[0] == other]
                            if rates:
                                result[f"vs_{other}"] = round(result["pictures_per_s"] / max(rates), 3)
            results["rounds"].append(figures)
        results["load_at_end"] = [round(v, 2) for v in os.getloadavg()]
    finally:
        for name in made:
            if args.keep and "scratch" not in name:
                log(f"kept instance {name}")
            else:
                service.delete_instance(name)
        for location in locations.values():
            service.storage.remove(location)
        shutil.rmtree(folder, ignore_errors=True)
        if moto:
            moto.stop()
        service.close()

    table(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str) + "\n")


def table(results: dict) -> None:
    print(f"{results['pictures']} pictures, generic instance, CHUNK_LINES {results['constants']['CHUNK_LINES']}, "
          f"READERS {results['constants']['READERS']}, BATCH {results['constants']['BATCH']}, ONNX threads "
          f"{results['onnx_threads']}; load {results['load_at_start']} -> {results.get('load_at_end')}")
    print("| round | mode | column | pictures/s | wall s | vs (a) | vs (b) | vs (c) | stages s: read / decode_detect "
          "/ encode / write | cpu s: this / postgres / moto / stolen | load |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    labels = {"a": "(a) pipeline alone", "b": "(b) AddImage one by one", "c": "(c) encoder alone, task's streams",
              "c-1": "(c) encoder alone, one stream",
              "import-local": "batch import, local", "import-s3": "batch import, s3"}
    for number, figures in enumerate(results["rounds"], start=1):
        for mode, steps in figures.items():
            for step in ("import-local", "import-s3", "a", "b", "c", "c-1"):
                if step not in steps:
                    continue
                r = steps[step]
                stages = r.get("stage_s") or {}
                stage_text = " / ".join(f"{stages[k]:.1f}" for k in ("read", "decode_detect", "encode", "write")
                                        if k in stages)
                if step.startswith("import") and r.get("failed"):
                    stage_text += f" ({r['failed']} failed)"
                cpu = " / ".join(str(r.get(k, "-")) for k in ("cpu_s", "postgres_cpu_s", "moto_cpu_s", "stolen_cpu_s"))
                print(f"| {number} | {mode} | {labels[step]} | {r['pictures_per_s']} | {r['wall_s']} | "
                      f"{r.get('vs_a', '-')} | {r.get('vs_b', '-')} | {r.get('vs_c', '-')} | {stage_text or '-'} | "
                      f"{cpu} | {r['load_before']} -> {r['load_after']} |")


if __name__ == "__main__":
    main()
