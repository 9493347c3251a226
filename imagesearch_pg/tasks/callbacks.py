"""The callback of a finished task: a POST of its outcome to the task's CallbackAddress
(../shared/spec/batch.md), to the addresses callback_policy checked, retried with backoff, every attempt
recorded on the task. Redirects are not followed; the answer's status is all that counts and its body is
not read.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import ssl
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.client import HTTPException
from typing import Callable

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection

from imagesearch_pg.errors import InvalidParameter
from imagesearch_pg.store import callbacks as store
from imagesearch_pg.store.callbacks import DueCallback
from imagesearch_pg.store.database import Database
from imagesearch_pg.tasks.callback_policy import CallbackPolicy, HostNotFound, Target

log = logging.getLogger(__name__)

USER_AGENT = "imagesearch-pg-callback"


def message(due: DueCallback, process_result_url: str | None) -> dict:
    """The JSON a finished task's callback posts. status: NORMAL when the task ran through, including
    partially_failed (its report, at processResultUrl, lists the failed lines); FAIL when it failed.
    finishTime in UTC; taskId a number, as the guide's example and the task lists' Id are; instanceId text."""
    defaults = {"succeeded": "success", "partially_failed": "finished; some lines failed", "failed": "failed"}
    return {
        "finishTime": due.finished_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
        "instanceId": str(due.instance_id),
        "instanceName": due.instance_name,
        "message": due.error_message or defaults[due.state],
        "processResultUrl": process_result_url or "",
        "status": "FAIL" if due.state == "failed" else "NORMAL",
        "taskId": due.id,
    }


@dataclass(frozen=True)
class Attempt:
    outcome: str  # delivered; failed (retried); refused (the address is not allowed: never retried)
    status: int | None  # the receiver's HTTP status, if it answered
    error: str | None  # what went wrong, in a few words
    at: datetime = field(default_factory=lambda: datetime.now(UTC))  # when the attempt began

    def as_record(self) -> dict:
        return {"at": self.at.isoformat(timespec="milliseconds"), "outcome": self.outcome, "status": self.status,
                "error": self.error}


def deliver(url: str, body: dict, policy: CallbackPolicy) -> Attempt:
    """POST ``body`` as JSON to ``url``, checked by ``policy`` now. Never raises for the network or the
    receiver: the outcome is in the Attempt."""
    began = datetime.now(UTC)
    try:
        target = policy.target(url)
    except HostNotFound as exc:
        return Attempt("failed", None, exc.message, began)
    except InvalidParameter as exc:
        return Attempt("refused", None, exc.message, began)
    payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
    headers = {"Host": target.host_header, "Content-Type": "application/json; charset=utf-8",
               "User-Agent": USER_AGENT}
    deadline = _Deadline(policy.timeout)
    try:
        status = _post(target, payload, headers, policy.timeout, deadline)
    except (OSError, HTTPException, urllib3.exceptions.HTTPError) as exc:
        error = _describe(TimeoutError() if deadline.expired else exc, policy.timeout)
        return Attempt("failed", None, error, began)
    finally:
        deadline.stop()
    if 200 <= status < 300:
        return Attempt("delivered", status, None, began)
    if 300 <= status < 400:
        return Attempt("failed", status, f"HTTP {status}: redirects are not followed", began)
    return Attempt("failed", status, f"HTTP {status}", began)


def _post(target: Target, payload: bytes, headers: dict, timeout: float, deadline: "_Deadline") -> int:
    """The receiver's status, from the first of the checked addresses that connects."""
    failure: Exception = TimeoutError()
    for address in target.addresses:
        if deadline.expired:
            break
        if target.scheme == "https":
            conn = HTTPSConnection(str(address), target.port, timeout=timeout, server_hostname=target.host)
        else:
            conn = HTTPConnection(str(address), target.port, timeout=timeout)
        deadline.watch(conn)
        try:
            try:
                conn.connect()
            except (OSError, urllib3.exceptions.HTTPError) as exc:
                failure = exc
                continue
            conn.request("POST", target.path, body=payload, headers=headers, preload_content=False)
            return conn.getresponse().status
        finally:
            conn.close()
    raise failure


class _Deadline:
    """Ends an exchange that outlasts the timeout: a socket's timeout bounds each read, not a receiver
    that answers one byte at a time."""

    def __init__(self, seconds: float):
        self.expired = False
        self._conn: HTTPConnection | None = None
        self._timer = threading.Timer(seconds, self._cut)
        self._timer.daemon = True
        self._timer.start()

    def watch(self, conn: HTTPConnection) -> None:
        self._conn = conn

    def _cut(self) -> None:
        self.expired = True
        sock = getattr(self._conn, "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                # socket.socket's own shutdown, also under TLS: SSLSocket.shutdown would unwrap the
                # socket under the reading thread's feet.
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def stop(self) -> None:
        self._timer.cancel()


def _describe(exc: BaseException, timeout: float) -> str:
    """A failure in a few words: the innermost cause (urllib3 wraps the socket's error)."""
    while not isinstance(exc, OSError) and (exc.__cause__ or exc.__context__) is not None:
        exc = exc.__cause__ or exc.__context__
    if isinstance(exc, TimeoutError):
        text = f"no answer within {timeout:g} s"
    elif isinstance(exc, ssl.SSLCertVerificationError):
        text = f"TLS certificate refused: {exc.verify_message}"
    elif isinstance(exc, ssl.SSLError):
        text = f"TLS failed: {exc.reason or exc}"
    else:
        text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return text[:200]


def run_due_callbacks(database: Database, policy: CallbackPolicy,
                      results_url_for: Callable[[DueCallback], str | None], *, limit: int = 100) -> int:
    """Deliver the callbacks due now, one at a time, and record each attempt; returns how many were
    attempted (``limit`` of them means more may be due). ``results_url_for`` gives a task's
    processResultUrl. A worker calls this when it wakes and whenever store.callbacks.next_due_in says."""
    made = 0
    while made < limit:
        with database.transaction() as conn:
            claimed = store.claim_due(conn, policy.lease_seconds, 1)  # one: the lease covers one delivery
        if not claimed:
            break
        _attempt(database, policy, claimed[0], results_url_for)
        made += 1
    return made


def _attempt(database: Database, policy: CallbackPolicy, due: DueCallback,
             results_url_for: Callable[[DueCallback], str | None]) -> None:
    attempt = deliver(due.params.get("callback_address", ""), message(due, results_url_for(due)), policy)
    made = len(due.attempts) + 1
    retry_in = policy.retry_delay(made) if attempt.outcome == "failed" else None
    final = "delivered" if attempt.outcome == "delivered" else None if retry_in is not None else "gave_up"
    with database.transaction() as conn:
        store.record(conn, due.id, attempt.as_record(), retry_in, final)
    fields = {"task_id": due.id, "attempt": made, "status": attempt.status, "error": attempt.error}
    if final == "delivered":
        log.info("callback delivered", extra=fields)
    elif final is None:
        log.info("callback failed; will retry", extra={**fields, "retry_in": retry_in})
    else:
        log.warning("callback given up", extra={**fields, "outcome": attempt.outcome})
