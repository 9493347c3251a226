"""The gunicorn worker that fronts the app: connections on an asyncio loop, requests parsed by h11 under
deadlines and size limits, each whole request then handed to the WSGI app on a thread.

Why not gunicorn's own threaded worker: a thread reads each request, so a few dozen clients that send
half a request and stall hold every thread, and valid requests go unanswered; and its refusals of
malformed requests are HTML pages. Here a waiting connection costs a coroutine, not a thread; a request
must arrive whole within REQUEST_SECONDS (no read may stall longer than STALL_SECONDS); and every refusal
is the protocol's JSON.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from urllib.parse import unquote

import h11
from gunicorn.workers.base import Worker

from flask_app import MAX_BODY_BYTES, protocol, signature

log = logging.getLogger(__name__)

MAX_HEADER_BYTES = 16 * 1024  # request line and headers together
STALL_SECONDS = 10.0  # the longest a client may send nothing while a request is under way
REQUEST_SECONDS = 60.0  # the longest one request may take to arrive (8 MB at about 1 Mbit/s)
READ_CHUNK = 64 * 1024
# Bodies being received are held in memory until whole: at most this much per worker, so that many clients
# sending large bodies slowly cannot exhaust memory (past it, new bytes are refused with 503).
BUFFERED_BYTES_PER_WORKER = 128 * 1024 * 1024


class Refusal(Exception):
    """A request refused before the app sees it: answered with the protocol's JSON, then the connection closes."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class FrontWorker(Worker):
    def run(self) -> None:
        self.executor = ThreadPoolExecutor(max_workers=self.cfg.threads, thread_name_prefix="request")
        self.open_connections = 0
        self.buffered = _Budget(BUFFERED_BYTES_PER_WORKER)
        self.running: dict[int, float] = {}  # requests in the app: started at (monotonic), by id
        try:
            asyncio.run(self._serve())
        finally:
            self.executor.shutdown(wait=True)

    async def _serve(self) -> None:
        servers = [await asyncio.start_server(self._connection, sock=listener.sock) for listener in self.sockets]
        while self.alive:
            # The arbiter's heartbeat: a worker that stops calling it is replaced. A request stuck in the app
            # longer than the timeout stops the heartbeat, so that its worker is replaced, as gunicorn's own
            # workers are.
            if not any(time.monotonic() - began > self.cfg.timeout for began in list(self.running.values())):
                self.notify()
            if self.ppid != os.getppid():
                log.warning("the server's master process is gone; worker exiting", extra={"pid": os.getpid()})
                break
            await asyncio.sleep(1.0)
        for server in servers:
            server.close()
        deadline = time.monotonic() + self.cfg.graceful_timeout
        while self.open_connections and time.monotonic() < deadline:
            await asyncio.sleep(0.1)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.open_connections >= self.cfg.worker_connections:
            await _refuse(writer, Refusal(503, "ServiceUnavailable", "the server has too many connections open; retry shortly"))
            return
        self.open_connections += 1
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        ends = (writer.get_extra_info("peername"), writer.get_extra_info("sockname"))
        try:
            while self.alive:
                try:
                    request = await _read_request(conn, reader, writer, self.cfg.keepalive, self.buffered)
                except Refusal as refusal:
                    await _refuse(writer, refusal)
                    return
                if request is None:  # closed, or idle past the keep-alive time
                    return
                head, body, repeated = request
                began = time.monotonic()
                status, headers, content = await asyncio.get_running_loop().run_in_executor(
                    self.executor, self._call_app, head, body, repeated, ends
                )
                if isinstance(content, bytes):
                    await _send(conn, writer, status, headers, content)
                    size = len(content)
                else:
                    size = await _stream(conn, writer, status, headers, content, self.executor)
                self._access(ends[0], head, status, size, time.monotonic() - began)
                if conn.our_state is h11.MUST_CLOSE or not self.alive:
                    return
                conn.start_next_cycle()
        except (ConnectionError, h11.LocalProtocolError, asyncio.IncompleteReadError, asyncio.TimeoutError):
            return
        except Exception:  # a bug here must not end the worker; the client gets no half answer
            log.exception("connection failed")
        finally:
            self.open_connections -= 1
            writer.close()

    def _access(self, peer, head: h11.Request, status: int, size: int, seconds: float) -> None:
        """One line per request in the access log (gunicorn's accesslog setting), in the common log format."""
        if self.cfg.accesslog:
            when = time.strftime("%d/%b/%Y:%H:%M:%S %z")
            target = logged_target(head.target.decode("latin-1"))
            line = (f'{peer[0] if peer else "-"} - - [{when}] "{head.method.decode()} {target} '
                    f'HTTP/{head.http_version.decode()}" {status} {size} {seconds:.4f}')
            self.log.access_log.info(line)

    def _call_app(self, head: h11.Request, body: bytes, repeated: frozenset[str],
                  ends) -> tuple[int, list, "bytes | _Blocks"]:
        key = id(head)
        self.running[key] = time.monotonic()
        try:
            return self._wsgi_call(_environ(head, body, repeated, *ends))
        except Exception:  # the app answers its own errors; this is a bug in it
            request_id = str(uuid.uuid4()).upper()
            log.exception("request failed", extra={"request_id": request_id})
            message = f"internal error; quote RequestId {request_id} when reporting it"
            body = json.dumps(protocol.error(request_id, "InternalError", message)).encode()
            return 500, [("Content-Type", "application/json")], body
        finally:
            del self.running[key]

    def _wsgi_call(self, environ: dict) -> tuple[int, list, "bytes | _Blocks"]:
        answer: dict = {}

        def start_response(status: str, headers: list, exc_info=None):
            answer["status"], answer["headers"] = int(status.split(" ", 1)[0]), headers
            return lambda data: answer.setdefault("written", []).append(data)

        result = self.wsgi(environ, start_response)
        streamed = not any(name.lower() == "content-length" for name, _ in answer["headers"])
        if streamed and not answer.get("written"):  # a download: sent block by block as the app reads it
            return answer["status"], answer["headers"], _Blocks(result)
        try:
            content = b"".join([*answer.get("written", []), *result])
        finally:
            if hasattr(result, "close"):
                result.close()
        return answer["status"], answer["headers"], content


class _Budget:
    """Bytes held by the requests of one worker (one event loop: no lock needed)."""

    def __init__(self, limit: int):
        self.limit, self.used = limit, 0

    def take(self, count: int) -> None:
        if self.used + count > self.limit:
            raise Refusal(503, "ServiceUnavailable", "the server holds too many request bodies now; retry shortly")
        self.used += count

    def give_back(self, count: int) -> None:
        self.used -= count


async def _read_request(conn: h11.Connection, reader, writer, keepalive: float, budget: _Budget):
    """The next whole request as (h11.Request, body, the names of the headers it sent more than once), or
    None when the client is done. Raises Refusal."""
    body = bytearray()
    try:
        return await _receive(conn, reader, writer, keepalive, budget, body)
    finally:
        budget.give_back(len(body))  # the app gets a copy; these bytes are freed with the buffer


async def _receive(conn: h11.Connection, reader, writer, keepalive: float, budget: _Budget, body: bytearray):
    clock = asyncio.get_running_loop().time  # the clock of wait_for's timers (a test's loop may move it)
    began = None  # the request's clock starts with its first byte
    head = None
    repeated: frozenset[str] = frozenset()
    sent = bytearray(conn.trailing_data[0])  # the request's bytes until its head is whole (a kept-alive
    # connection's next request may have begun in the last read of the one before)
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            if exc.error_status_hint == 431:
                raise Refusal(431, "InvalidParameter", f"the request line and headers are over {MAX_HEADER_BYTES // 1024} kB")
            raise Refusal(exc.error_status_hint, "InvalidParameter", f"malformed HTTP request: {exc}"[:300]) from None
        if event is h11.NEED_DATA:
            if began is None:
                timeout = keepalive  # waiting for a request on a kept-alive (or new) connection
            else:
                timeout = min(STALL_SECONDS, began + REQUEST_SECONDS - clock())
                if timeout <= 0:
                    raise _late()
            try:
                data = await asyncio.wait_for(reader.read(READ_CHUNK), timeout)
            except asyncio.TimeoutError:
                if began is None:
                    return None
                if timeout < STALL_SECONDS:  # the request's own time ran out before a pause did
                    raise _late() from None
                raise Refusal(408, "RequestTimeout", f"the client sent nothing for {STALL_SECONDS:.0f} s in the middle of a request") from None
            if began is None:
                if not data:
                    return None
                began = clock()
            if head is None:
                sent += data
            conn.receive_data(data)
            continue
        if isinstance(event, h11.Request):
            head = event
            repeated = signature.repeated(_header_names(sent))
            size = len(event.target) + sum(len(name) + len(value) + 4 for name, value in event.headers)
            if size > MAX_HEADER_BYTES:  # h11 holds to its limit only while a head is incomplete
                raise Refusal(431, "InvalidParameter", f"the request line and headers are over {MAX_HEADER_BYTES // 1024} kB")
            names = [name for name, _ in event.headers]
            if b"content-length" in names and b"transfer-encoding" in names:
                # Two ways to frame one body: what a proxy in front reads as the end may not be ours.
                raise Refusal(400, "InvalidParameter", "a request may not have both Content-Length and Transfer-Encoding")
            declared = _content_length(event)
            if declared is not None and declared > MAX_BODY_BYTES:
                raise Refusal(413, "InvalidParameter", _too_large())
            if conn.they_are_waiting_for_100_continue:
                writer.write(conn.send(h11.InformationalResponse(status_code=100, headers=[])))
        elif isinstance(event, h11.Data):
            if len(body) + len(event.data) > MAX_BODY_BYTES:
                raise Refusal(413, "InvalidParameter", _too_large())
            budget.take(len(event.data))
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            return head, bytes(body), repeated
        elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
            if head is not None:
                raise Refusal(400, "InvalidParameter", "the connection closed before the request's body was whole")
            return None


def logged_target(target: str) -> str:
    """A request target as access logs show it: the path, and of the query only the parameters' names. A
    query value may be a bearer secret (a download link's Signature is the permission itself, for a day), so
    none is logged, whatever its name; an item without "=" is a value, shown as "-"."""
    path, marked, query = target.partition("?")
    if marked:
        path += "?" + "&".join(item.partition("=")[0] if "=" in item else "-" for item in query.split("&"))
    return path[:300].encode("unicode_escape").decode("ascii")  # control characters cannot forge log lines


def _header_names(sent: bytes) -> list[str]:
    """The names of the header fields in the head that ``sent`` begins with (h11 has parsed it), each as often
    as sent: h11 keeps one of two equal Content-Length headers, and the app must see such a repeat too."""
    head = re.split(rb"\r?\n\r?\n", sent.lstrip(b"\r\n"), maxsplit=1)[0]
    lines = head.split(b"\n")[1:]  # after the request line; a line that begins with a space continues the one before
    return [line.split(b":", 1)[0].decode("latin-1") for line in lines if line[:1] not in (b" ", b"\t")]


def _content_length(head: h11.Request) -> int | None:
    for name, value in head.headers:
        if name == b"content-length":
            return int(value)  # h11 has checked it is digits
    return None


def _late() -> Refusal:
    return Refusal(408, "RequestTimeout", f"the request did not arrive within {REQUEST_SECONDS:.0f} s")


def _too_large() -> str:
    return f"the request body is over {MAX_BODY_BYTES // (1024 * 1024)} MB"


async def _send(conn: h11.Connection, writer, status: int, headers: list, content: bytes) -> None:
    names = {name.lower() for name, _ in headers}
    if "content-length" not in names:
        headers = [*headers, ("Content-Length", str(len(content)))]
    writer.write(conn.send(h11.Response(status_code=status, headers=[(n.encode(), v.encode("latin-1")) for n, v in headers])))
    writer.write(conn.send(h11.Data(data=content)))
    writer.write(conn.send(h11.EndOfMessage()))
    await _drained(writer)


class _Blocks:
    """A streamed WSGI answer's blocks, taken one at a time on a request thread (the app reads them from the
    database or storage) and closed when done."""

    def __init__(self, result):
        self._result, self._blocks = result, iter(result)

    def next(self) -> bytes | None:
        return next(self._blocks, None)

    def close(self) -> None:
        if hasattr(self._result, "close"):
            self._result.close()


async def _stream(conn: h11.Connection, writer, status: int, headers: list, blocks: _Blocks, executor) -> int:
    """Send a streamed answer (chunked), each block once the one before has left: memory stays at a block
    whatever the size, and a client that stops reading is dropped after STALL_SECONDS."""
    loop = asyncio.get_running_loop()
    sent = 0
    try:
        writer.write(conn.send(h11.Response(status_code=status, headers=[(n.encode(), v.encode("latin-1")) for n, v in headers])))
        while (block := await loop.run_in_executor(executor, blocks.next)) is not None:
            if block:
                writer.write(conn.send(h11.Data(data=block)))
                sent += len(block)
                await _drained(writer)
        writer.write(conn.send(h11.EndOfMessage()))
        await _drained(writer)
    finally:
        await loop.run_in_executor(executor, blocks.close)
    return sent


async def _refuse(writer, refusal: Refusal) -> None:
    """The refusal as the protocol's JSON, written as it is (the request may not have parsed), then close."""
    body = json.dumps(protocol.error(str(uuid.uuid4()).upper(), refusal.code, refusal.message)).encode()
    head = (
        f"HTTP/1.1 {refusal.status} {HTTPStatus(refusal.status).phrase}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    try:
        writer.write(head.encode("ascii") + body)
        await _drained(writer)
    except (ConnectionError, asyncio.TimeoutError):
        pass
    finally:
        writer.close()


async def _drained(writer) -> None:
    """Wait for the answer to leave, but not for a client that does not read: it would hold the connection
    (and its slot) forever. Past STALL_SECONDS the connection is dropped."""
    try:
        await asyncio.wait_for(writer.drain(), STALL_SECONDS)
    except asyncio.TimeoutError:
        writer.transport.abort()
        raise


def _environ(head: h11.Request, body: bytes, repeated: frozenset[str], peer, local) -> dict:
    target = head.target.decode("latin-1")
    path, _, query = target.partition("?")
    host, port = (local or ("localhost", 80))[:2]
    environ = {
        "REQUEST_METHOD": head.method.decode("ascii"),
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote(path, encoding="latin-1"),
        "RAW_URI": target,  # as sent (gunicorn's and Werkzeug's name): the signature covers this spelling
        "QUERY_STRING": query,
        "SERVER_NAME": str(host),
        "SERVER_PORT": str(port),
        "SERVER_PROTOCOL": f"HTTP/{head.http_version.decode('ascii')}",
        "REMOTE_ADDR": peer[0] if peer else "",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "CONTENT_LENGTH": str(len(body)),
        # Below, a repeated header is joined or its last value kept: the app refuses those that must be sent once.
        signature.REPEATED_HEADERS: repeated,
    }
    for name, value in head.headers:
        if b"_" in name:  # x_acs_action would pass for x-acs-action in WSGI's naming: dropped, as nginx does
            continue
        key = name.decode("latin-1").upper().replace("-", "_")
        text = value.decode("latin-1")
        if key == "CONTENT_TYPE":
            environ["CONTENT_TYPE"] = text
        elif key not in ("CONTENT_LENGTH", "TRANSFER_ENCODING"):
            environ[f"HTTP_{key}"] = f"{environ[f'HTTP_{key}']},{text}" if f"HTTP_{key}" in environ else text
    return environ
