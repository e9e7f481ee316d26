"""An inference unit: one serving process for one model.

    python -m services.hosting.unit_server --model DIR --address ADDR [--threads N] ...

The hosting service starts one per inference unit. It loads the model once
(``ServedModel``: the exported ONNX file, onnxruntime on CUDA when present,
else the CPU), warms it up, measures the batch size worth using, listens on
``ADDR`` (a Unix socket, see ``protocol``) and prints one line,
``READY {json}``, on stdout (or ``FAILED {"error": ...}`` and exits). The service connects once and pipelines
``detect`` and ``ping`` frames over that connection.

Inside, three kinds of threads overlap the work of consecutive requests:

* the **reader** takes frames off the socket and hands each image to
* the **decoders** (a pool, one per core), which decode and preprocess it
  with the same ``preprocess`` code evaluation uses (JPEG draft mode included:
  a 640x480 photo decodes at 1/2 scale for a 224 px model) while
* the **runners** (``--runners``, default 2 on a CPU) run onnxruntime on
  whatever is decoded: each takes up to ``max_batch`` ready images, waiting
  at most ``--max-wait-ms`` for more only while other images are still being
  decoded (so a lone request never waits), and answers each request by id.
  When nothing is queued and a runner's slot is free, the decoder runs its
  own image's inference instead of handing it over: one thread hop fewer for
  a lone request, which under CPU contention is worth milliseconds.

Two runners sharing the session's thread pool measured faster than one on
the 2-core CPU (111 against 84 images/s for a 224 px EfficientNet-Lite0) and
the pool's threads do not spin (``allow_spinning=0``), leaving the cores to
decoding and networking when they have nothing to do.

Batch size from measurement: at start the unit times the forward pass at
batch 1, 2, 4, ... until the per-image time stops improving, and caps
batches at the smallest size within 10 % of the best per-image time (kept in
``calibration.json`` beside the model: measured at each StartProjectVersion,
reused by the units a running model adds later). On the 2-core CPU the per-image time is flat (8.3 ms at 1, 8.0 at
2, 8.9 at 4), so batches stay small and latency low; on a GPU the same rule
picks batches of dozens.

The unit exits when the service's connection closes, when its stdin closes
(the service died, even by SIGKILL), or on SIGTERM, so it never outlives the
service that started it.
"""
from __future__ import annotations

import argparse
import collections
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from customlabels.images import (
    INVALID_IMAGE_DIMENSION,
    ImageProblem,
    return_freed_memory_to_the_os,
)
from customlabels.ml.runtime.served import ServedModel

from services.hosting import protocol

log = logging.getLogger("customlabels.hosting.unit_server")

BATCH_LIMIT = 128
WITHIN_BEST = 1.10  # the batch cap: the smallest batch whose per-image time is this close to the best


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# --- batch size from measurement -------------------------------------------------------
def calibrate(model: ServedModel, limit: int = BATCH_LIMIT, min_seconds: float = 0.05,
              budget_seconds: float = 1.5) -> dict:
    """Per-image forward time at batch 1, 2, 4, ... and the batch cap they suggest.

    Doubling stops once two sizes in a row brought no gain of 3 % (the curve
    has flattened: a CPU gets there at 2 to 4), or after ``budget_seconds``.
    """
    size = model.preprocessing.input_size
    one = np.zeros((1, 3, size, size), np.float32)
    per_image: dict[int, float] = {}
    best = float("inf")
    batch, flat = 1, 0
    begun = time.perf_counter()
    while batch <= limit:
        x = np.repeat(one, batch, 0)
        model.run(x)  # first run of a shape allocates
        times, started = [], time.perf_counter()
        while len(times) < 3 or time.perf_counter() - started < min_seconds:
            t = time.perf_counter()
            model.run(x)
            times.append(time.perf_counter() - t)
        # The fastest run: other work on the machine only ever adds time.
        per_image[batch] = min(times) / batch
        flat = flat + 1 if per_image[batch] > best * 0.97 else 0
        best = min(best, per_image[batch])
        if flat >= 2 or time.perf_counter() - begun > budget_seconds:
            break
        batch *= 2
    cap = min(b for b, t in per_image.items() if t <= best * WITHIN_BEST)
    return {
        "max_batch": cap,
        "seconds_per_image": best,
        "per_image_ms": {str(b): round(t * 1000, 3) for b, t in per_image.items()},
    }


def cached_calibration(model: ServedModel, folder: Path, key: str) -> dict:
    path = folder / protocol.CALIBRATION_FILE
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    if key in known:
        return known[key]
    result = calibrate(model)
    known[key] = result
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        tmp.write_text(json.dumps(known, indent=1))
        os.replace(tmp, path)  # another unit may write the same: either copy is right
    except OSError:
        log.warning("could not keep the calibration in %s", path)
    return result


# --- the serving loop ------------------------------------------------------------------
class Connection:
    """The service's connection: frames in on the reader thread, answers out from any thread."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._send_lock = threading.Lock()

    def send(self, header: dict, body: bytes = b"") -> None:
        frame = protocol.encode(header, body)
        with self._send_lock:
            try:
                self.sock.sendall(frame)
            except OSError:
                pass  # the service went away; the reader sees it and the process ends


class Unit:
    def __init__(self, model: ServedModel, *, max_batch: int, max_wait: float, runners: int, decoders: int,
                 facts: dict) -> None:
        self.model = model
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.runners = runners
        self.facts = facts
        self.ready: collections.deque = collections.deque()
        self.decoding = 0  # images handed to the decoders and not yet ready
        self.busy = 0  # inferences running (at most ``runners``)
        self.cond = threading.Condition()
        # A decoder may run its image's inference itself (see _decode): room for decoding meanwhile.
        self.decoders = ThreadPoolExecutor(decoders + runners, thread_name_prefix="decode")
        self.counters = {"requests": 0, "images": 0, "batches": 0, "busy_seconds": 0.0, "errors": 0}
        for n in range(runners):
            threading.Thread(target=self._run, name=f"runner-{n}", daemon=True).start()

    # reader thread
    def serve(self, conn: Connection) -> None:
        while True:
            frame = protocol.read_frame(conn.sock)
            if frame is None:
                return
            header, body = frame
            op = header.get("op")
            if op == "detect":
                with self.cond:
                    self.decoding += 1
                    self.counters["requests"] += 1
                self.decoders.submit(self._decode, conn, header, body)
            elif op == "ping":
                with self.cond:
                    load = {**self.counters, "queued": len(self.ready), "decoding": self.decoding, "busy": self.busy}
                conn.send({"id": header.get("id"), "ok": True, **self.facts, **load})
            else:
                conn.send({"id": header.get("id"), "ok": False, "code": "InternalServerError",
                           "message": f"unknown unit operation {op!r}"})

    # decoder threads
    def _decode(self, conn: Connection, header: dict, body: bytes) -> None:
        try:
            array = self.model.preprocess([body])
        except ImageProblem as problem:
            code = "ImageTooLargeException" if problem.code == INVALID_IMAGE_DIMENSION else "InvalidImageFormatException"
            self._fail(conn, header, code, problem.message)
            return
        except Exception as exc:  # noqa: BLE001 - Pillow raises many kinds for hostile files
            self._fail(conn, header, "InvalidImageFormatException", f"the image could not be decoded: {exc}")
            return
        item = (conn, header, array)
        with self.cond:
            self.decoding -= 1
            # Nothing queued, a runner's slot free and no batch to wait for: run it on this thread,
            # one thread hop fewer on the way (what a lone request's latency is made of).
            inline = (self.busy < self.runners and not self.ready
                      and (self.max_batch == 1 or self.decoding == 0))
            if inline:
                self.busy += 1
            else:
                self.ready.append(item)
            self.cond.notify_all()
        if inline:
            self._infer([item])

    def _fail(self, conn: Connection, header: dict, code: str, message: str) -> None:
        with self.cond:
            self.decoding -= 1
            self.counters["errors"] += 1
            self.cond.notify_all()
        conn.send({"id": header["id"], "ok": False, "code": code, "message": message})

    # runner threads
    def _take(self) -> list:
        with self.cond:
            while not self.ready or self.busy >= self.runners:
                self.cond.wait()
            self.busy += 1
            deadline = None
            while len(self.ready) < self.max_batch and self.decoding > 0:
                # More images are being decoded right now: wait a little for them.
                deadline = deadline or time.monotonic() + self.max_wait
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self.cond.wait(remaining)
            take = [self.ready.popleft() for _ in range(min(self.max_batch, len(self.ready)))]
            if not take:  # another runner took them meanwhile
                self.busy -= 1
            self.cond.notify_all()
            return take

    def _run(self) -> None:
        while True:
            take = self._take()
            if take:
                self._infer(take)

    def _infer(self, take: list) -> None:
        """One onnxruntime run for ``take`` (a slot already claimed), and every answer sent."""
        started = time.perf_counter()
        try:
            batch = take[0][2] if len(take) == 1 else np.concatenate([item[2] for item in take])
            results = self.model.predictions_from_array(batch)
        except Exception as exc:  # answer every request, whatever happened
            log.exception("inference failed for a batch of %d", len(take))
            self._release(0, 0.0)
            for conn, header, _ in take:
                conn.send({"id": header["id"], "ok": False, "code": "InternalServerError",
                           "message": f"inference failed: {exc}"})
            return
        busy = time.perf_counter() - started
        self._release(len(take), busy)
        for index, ((conn, header, _), predictions) in enumerate(zip(take, results)):
            chosen = self.model.select(predictions, header.get("min_confidence"), header.get("max_results"))
            answer = {
                "id": header["id"],
                "ok": True,
                "labels": [[p.label, p.confidence, list(p.box) if p.box is not None else None] for p in chosen],
                "batch": len(take),
                "first": index == 0,  # the service counts each batch once
                "infer_ms": round(busy * 1000, 3),
            }
            if header.get("capture"):  # a flow definition is bound: what its conditions are evaluated on
                answer["capture"] = self._capture_facts(predictions)
            conn.send(answer)

    def _capture_facts(self, predictions: list) -> dict:
        """Every prediction (before MinConfidence/MaxResults), the thresholds in force, the model's task and labels."""
        card = self.model.card
        return {
            "all": [[p.label, p.confidence, list(p.box) if p.box is not None else None] for p in predictions],
            "thresholds": {label: round(100.0 * card.threshold(label), 3) for label in card.labels},
            "task": card.task,
            "labels": list(card.labels),
        }

    def _release(self, images: int, seconds: float) -> None:
        with self.cond:
            self.busy -= 1
            if images:
                self.counters["batches"] += 1
                self.counters["images"] += images
                self.counters["busy_seconds"] += seconds
            self.cond.notify_all()


# --- process --------------------------------------------------------------------------
def _exit_when_orphaned() -> None:
    """stdin is a pipe from the service: EOF means the service is gone (even killed -9)."""
    try:
        while sys.stdin.buffer.read(4096):
            pass
    except OSError:
        pass
    os._exit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.hosting.unit_server", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, type=Path, help="folder with model.onnx and model.json")
    parser.add_argument("--address", required=True, help="Unix socket address to listen on (a leading @ means abstract)")
    parser.add_argument("--name", default="unit", help="name in logs")
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: one per core)")
    parser.add_argument("--runners", type=int, default=0, help="concurrent inference threads (0: 2 on a CPU, 1 on a GPU)")
    parser.add_argument("--decoders", type=int, default=0, help="decoding threads (0: as many as --threads)")
    parser.add_argument("--max-batch", type=int, default=0, help="batch cap (0: measure it)")
    parser.add_argument("--max-wait-ms", type=float, default=2.0, help="longest wait for a fuller batch")
    parser.add_argument("--spinning", type=int, default=0, help="1: onnxruntime's pool threads spin between runs")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("CUSTOMLABELS_LOG_LEVEL", "INFO"),
        format=f"%(asctime)s %(levelname)s {args.name}[%(process)d] %(message)s",
    )
    threading.Thread(target=_exit_when_orphaned, name="orphan-watch", daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    return_freed_memory_to_the_os()  # a flood of large images must not leave the unit at its peak for good

    started = time.perf_counter()
    n = cores()
    threads = args.threads or n
    try:
        model = ServedModel.load(args.model, threads=threads, spinning=bool(args.spinning))
    except Exception as exc:  # the reason goes to the service, which reports it
        log.exception("cannot load the model in %s", args.model)
        print("FAILED " + json.dumps({"error": f"{type(exc).__name__}: {exc}"[:500]}), flush=True)
        return 1
    on_gpu = "CUDAExecutionProvider" in model.providers
    runners = args.runners or (1 if on_gpu else min(2, n))
    key = f"{'+'.join(model.providers)}/threads={threads}/cores={n}"
    size = model.preprocessing.input_size
    model.run(np.zeros((1, 3, size, size), np.float32))  # warm-up: the first run allocates
    calibration = cached_calibration(model, args.model, key)
    max_batch = args.max_batch or calibration["max_batch"]
    facts = {
        "pid": os.getpid(),
        "providers": model.providers,
        "threads": threads,
        "runners": runners,
        "max_batch": max_batch,
        "seconds_per_image": calibration.get("seconds_per_image"),
        "task": model.card.task,
    }
    unit = Unit(model, max_batch=max_batch, max_wait=args.max_wait_ms / 1000, runners=runners,
                decoders=args.decoders or threads, facts=facts)

    address = protocol.os_address(args.address)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(address)
    listener.listen(1)
    facts["load_seconds"] = round(time.perf_counter() - started, 3)
    log.info("serving %s: %s", args.model, json.dumps({**facts, "calibration": calibration}))
    print("READY " + json.dumps(facts), flush=True)

    sock, _ = listener.accept()
    listener.close()
    if not address.startswith("\0"):
        Path(address).unlink(missing_ok=True)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    try:
        unit.serve(Connection(sock))
    except Exception:
        log.exception("the connection to the service broke")
    finally:
        os._exit(0)  # the service closed (or broke) the connection: nobody is left to answer


if __name__ == "__main__":
    sys.exit(main())
