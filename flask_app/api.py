"""POST /: the Image Search 2020-12-14 protocol (../shared/spec/api.md), as the official SDKs speak it.

One endpoint; the action comes in the x-acs-action header (or the Action query parameter), parameters in
the form body and the query string. Each action is a small function from Params to the response body; the
service layer does the work. Every response carries a RequestId; errors are {RequestId, Code, Message}.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Callable
from urllib.parse import parse_qsl

from flask import Blueprint, current_app, g, jsonify, request
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge

from flask_app import metrics, protocol, rpc_signature, signature
from flask_app.extensions import get_service
from flask_app.params import Params
from imagesearch_pg.errors import (
    DatabaseUnavailable,
    HeadersNotReported,
    ImageSearchError,
    InvalidAccessKeyId,
    InvalidParameter,
    InvalidVersion,
    MissingParameter,
    NoPermission,
    SignatureDoesNotMatch,
    SignatureNonceUsed,
)
from imagesearch_pg.logs import Every
from imagesearch_pg.service import ImageSearch, tasks

log = logging.getLogger(__name__)
bp = Blueprint("api", __name__)

ACTIONS: dict[str, Callable[[ImageSearch, Params], dict]] = {}
_UNAVAILABLE_LOG = Every(10.0)  # while the database is down: one line per 10 s per process
# Which rate each action counts against (ImageSearch.admit); actions not listed are not throttled.
RATE_KINDS: dict[str, str] = {}


def action(name: str, rate: str | None = None):
    def register(function):
        ACTIONS[name] = function
        if rate is not None:
            RATE_KINDS[name] = rate
        return function

    return register


@bp.post("/")
def dispatch():
    began = time.perf_counter()
    name = request.headers.get("x-acs-action") or request.args.get("Action")
    response, status, code = _dispatch(name)
    # Unknown names are counted under one label: clients must not be able to grow the label set.
    metrics.observe(name if name in ACTIONS else "unknown", code, time.perf_counter() - began)
    return response, status


def _dispatch(name: str | None):
    """(response, HTTP status, the protocol's Code or "OK")."""
    request_id = str(uuid.uuid4()).upper()
    try:
        # Before the action is even looked up: a repeated x-acs-action arrives joined, as no action at all.
        signature.refuse_repeated(request.environ.get(signature.REPEATED_HEADERS, ()),
                                  request.headers.get("authorization"))
        named = {request.headers.get("x-acs-action"), request.args.get("Action")} - {None}
        if len(named) > 1:  # both signed, and one would be acted on while the other is what a proxy reads
            raise InvalidParameter("the action is named twice, as x-acs-action and as Action, differently: name it once")
        if not name:
            raise MissingParameter("the action is missing: send it in the x-acs-action header")
        handler = ACTIONS.get(name)
        if handler is None:
            raise InvalidParameter(f"unknown action {name[:64]!r}; known: {', '.join(sorted(ACTIONS))}")
        body = request.get_data(cache=True)  # limited by MAX_CONTENT_LENGTH before it is read whole
        service = get_service()
        # The signature first (it needs only the body's hash): a stranger's body is never parsed.
        signed = None if current_app.config["INSECURE_NO_AUTH"] else _verify(service, body)
        params = _params()
        if signed is not None:
            _permitted(signed, params)
        for where, version in (("x-acs-version", request.headers.get("x-acs-version")),
                               ("Version", params.get("Version"))):
            if version is not None and version != protocol.VERSION:  # absent: the one version there is
                raise InvalidVersion(f"{where} must be {protocol.VERSION}, the API version this server speaks; "
                                     f"got {version[:32]!r}")
        answer_format = params.get("Format")  # the RPC style's; absent: JSON
        if answer_format is not None and answer_format.upper() != "JSON":
            raise InvalidParameter(f"this server answers in JSON: Format must be JSON, not {answer_format[:16]!r}")
        if name in RATE_KINDS:
            service.admit(params.required("InstanceName"), RATE_KINDS[name])
        result = handler(service, params)
    except ImageSearchError as exc:
        if isinstance(exc, (DatabaseUnavailable, HeadersNotReported)) and _UNAVAILABLE_LOG:
            log.warning("answering 503: %s", exc.message, extra={"request_id": request_id})
        return _error(request_id, exc.code, exc.message, protocol.http_status(exc))
    except RequestEntityTooLarge:
        limit = current_app.config["MAX_CONTENT_LENGTH"]
        return _error(request_id, "InvalidParameter", f"the request body is over {limit // (1024 * 1024)} MB", 413)
    except BadRequest as exc:  # a body the server could not read whole (bad chunking, a client gone)
        return _error(request_id, "InvalidParameter", f"the request body could not be read: {exc.description}", 400)
    except Exception:  # a bug: logged with its traceback, answered in the protocol's shape
        log.exception("request failed", extra={"request_id": request_id})
        return _error(request_id, "InternalError", f"internal error; quote RequestId {request_id} when reporting it", 500)
    return jsonify({"RequestId": request_id, **result}), 200, "OK"


def _params() -> Params:
    """The parameters of the query string and the form body, read once per request."""
    if "params" not in g:
        _check_encoding(request.query_string, "query string")
        if request.mimetype == "application/x-www-form-urlencoded":
            if request.mimetype_params.get("charset", "utf-8").lower() not in ("utf-8", "utf8"):
                raise InvalidParameter("a form body is read as UTF-8: send charset=utf-8, or no charset")
            _check_encoding(request.get_data(cache=True), "form body")
        g.params = Params.of(request.args, request.form)
    return g.params


_NON_ASCII_ESCAPE = re.compile(rb"%[89a-fA-F][0-9a-fA-F]")


def _check_encoding(raw: bytes, where: str) -> None:
    """Percent-escapes must decode to UTF-8: Werkzeug would keep '%FF' as those three characters. Only a
    text with escapes of non-ASCII bytes needs decoding to know (a 4 MB picture's form: 3 ms, not 50)."""
    try:
        text = raw.decode("utf-8")
        if _NON_ASCII_ESCAPE.search(raw):
            parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise InvalidParameter(f"the {where} is not percent-encoded UTF-8 text") from None


def _error(request_id: str, code: str, message: str, status: int):
    return jsonify(protocol.error(request_id, code, message)), status, code


def _verify(service: ImageSearch, body: bytes) -> signature.SignedRequest:
    """The request's signature checked, in the style it was sent: ACS3 (an Authorization header) or RPC (a
    Signature parameter in the query string)."""
    keys = service.access_keys
    headers = {name.lower(): value for name, value in request.headers.items()}
    # The path as sent, not as decoded and routed: '/%2F' reaches this endpoint too, but it is not what was signed.
    path = request.environ.get("RAW_URI", request.path).split("?", 1)[0]
    if not rpc_signature.is_rpc(request.args):
        signed = signature.verify(request.method, path, request.query_string.decode("latin-1"), headers, body,
                                  keys.credential)
    elif "authorization" in headers:
        raise SignatureDoesNotMatch("the request is signed twice, with an Authorization header and a Signature "
                                    "parameter: sign it in one style")
    elif "Action" not in request.args:  # so that the action acted on is the signed one (see _dispatch)
        raise MissingParameter("a request signed in the RPC style names its Action in the query string")
    else:
        # The key first, from the query string: a stranger's body is never parsed.
        key_id = request.args.get("AccessKeyId", "")
        if keys.credential(key_id) is None:
            raise InvalidAccessKeyId(f"AccessKeyId {key_id[:64]!r} (in the query string) is not an active key of "
                                     "this server")
        signed = rpc_signature.verify(request.method, path, _params().values, keys.credential)
    if signature.REPEATED_HEADERS not in request.environ:
        # A WSGI server of another kind: it may have joined or dropped a repeated signed header unseen.
        raise HeadersNotReported("this server cannot check signed requests: the HTTP server in front of the app "
                                 "does not report repeated headers; serve with `imagesearch serve`")
    if not keys.first_use_of_nonce(signed.nonce, signature.DATE_WINDOW):
        raise SignatureNonceUsed("this signature nonce was already used: each request needs a new one")
    return signed


def _permitted(signed: signature.SignedRequest, params: Params) -> None:
    instance = params.required("InstanceName")  # every action names one
    if not signed.credential.allows(instance):
        raise NoPermission(f"AccessKey {signed.key_id} may not use instance {instance[:64]!r}")


def _search_options(params: Params) -> dict:
    return dict(
        num=params.int("Num", 10),
        start=params.int("Start", 0),
        filter=params.get("Filter"),
        score_threshold=params.float("ScoreThreshold"),
        distinct_product_id=params.bool("DistinctProductId", False),
    )


# ---- actions ----------------------------------------------------------------------------------------


@action("AddImage", rate="add")
def add_image(service: ImageSearch, params: Params) -> dict:
    info = service.add_image(
        params.required("InstanceName"),
        params.required("ProductId"),
        params.required("PicName"),
        params.picture("PicContent"),
        category_id=params.int("CategoryId"),
        crop=params.bool("Crop", True),
        region=params.get("Region"),
        attributes=params.attributes(),
    )
    return {**protocol.done(), "PicInfo": protocol.pic_info(info)}


@action("SearchImageByPic", rate="search")
def search_image_by_pic(service: ImageSearch, params: Params) -> dict:
    return protocol.search(service.search_by_picture(
        params.required("InstanceName"),
        params.picture("PicContent"),
        category_id=params.int("CategoryId"),
        crop=params.bool("Crop", True),
        region=params.get("Region"),
        **_search_options(params),
    ))


@action("SearchImageByName", rate="search")
def search_image_by_name(service: ImageSearch, params: Params) -> dict:
    return protocol.search(service.search_by_name(
        params.required("InstanceName"),
        params.required("ProductId"),
        params.required("PicName"),
        category_id=params.int("CategoryId"),
        **_search_options(params),
    ))


@action("SearchImageByFilter", rate="search")
def search_image_by_filter(service: ImageSearch, params: Params) -> dict:
    result = service.search_by_filter(
        params.required("InstanceName"), params.required("Filter"),
        num=params.int("Num", 10), start=params.int("Start", 0),
    )
    return protocol.found(Auctions=[protocol.match(m) for m in result.matches])


@action("SearchImageByText", rate="search")
def search_image_by_text(service: ImageSearch, params: Params) -> dict:
    return protocol.text_search(service.search_by_text(params.required("InstanceName"), params.required("Text"),
                                                       **_search_options(params)))


@action("CheckImageExists", rate="search")
def check_image_exists(service: ImageSearch, params: Params) -> dict:
    found = service.check_image_exists(
        params.required("InstanceName"), params.required("ProductId"), params.required("PicName")
    )
    body = protocol.found(Exists=found is not None)
    if found is not None:
        body["Auctions"] = protocol.match(found)
    return body


@action("UpdateImage", rate="add")
def update_image(service: ImageSearch, params: Params) -> dict:
    service.update_image(
        params.required("InstanceName"), params.required("ProductId"), params.required("PicName"),
        params.attributes(),
    )
    return protocol.done()


@action("CompareSimilarByImage", rate="search")
def compare_similar_by_image(service: ImageSearch, params: Params) -> dict:
    score = service.compare_pictures(
        params.required("InstanceName"), params.picture("PrimaryPicContent"), params.picture("SecondaryPicContent")
    )
    return protocol.found(Score=score)


@action("IncreaseInstance", rate="add")
def increase_instance(service: ImageSearch, params: Params) -> dict:
    task = service.tasks.submit_import(
        params.required("InstanceName"), params.required("BucketName"), params.required("Path"),
        params.get("CallbackAddress"),
    )
    return {"Success": True, "Data": {"Id": str(task.id), "IncrementStatus": tasks.STATUS[task.state]}}


@action("IncreaseList", rate="search")
def increase_list(service: ImageSearch, params: Params) -> dict:
    page_number, page_size = params.int("PageNumber", 1), params.int("PageSize", 10)
    total, found = service.tasks.list_imports(
        params.required("InstanceName"), task_id=params.int("Id"), location=params.get("BucketName"),
        path=params.get("Path"), page_number=page_number, page_size=page_size,
    )
    items = [tasks.increment(task, service.tasks.link(task, tasks.ERRORS, request.host_url)) for task in found]
    return {"Success": True, "Data": {"TotalCount": total, "PageNumber": page_number, "PageSize": page_size,
                                      "Increments": {"Instance": items}}}


@action("DumpMeta", rate="add")
def dump_meta(service: ImageSearch, params: Params) -> dict:
    task = service.tasks.submit_export(params.required("InstanceName"))
    return {"Success": True, "Data": {"Id": str(task.id), "DumpMetaStatus": tasks.STATUS[task.state]}}


@action("DumpMetaList", rate="search")
def dump_meta_list(service: ImageSearch, params: Params) -> dict:
    page_number, page_size = params.int("PageNumber", 1), params.int("PageSize", 10)
    total, found = service.tasks.list_exports(
        params.required("InstanceName"), task_id=params.int("Id"), page_number=page_number, page_size=page_size,
    )
    items = [tasks.dump(task, service.tasks.link(task, tasks.META, request.host_url)) for task in found]
    return {"Success": True, "Data": {"TotalCount": total, "PageNumber": page_number, "PageSize": page_size,
                                      "DumpMetaList": items}}


@action("DeleteImage", rate="delete")
def delete_image(service: ImageSearch, params: Params) -> dict:
    instance = params.required("InstanceName")
    if params.bool("IsDeleteByFilter", False):
        given = [name for name in ("ProductId", "PicName") if params.get(name)]
        if given:
            raise InvalidParameter(f"a delete by Filter (IsDeleteByFilter=true) takes no {' or '.join(given)}")
        deleted = service.delete_image(instance, filter=params.required("Filter"))
    else:
        deleted = service.delete_image(instance, params.required("ProductId"), params.get("PicName"))
    return {**protocol.done(), "Data": {"PicNames": deleted.pic_names}}


@action("Detail")
def detail(service: ImageSearch, params: Params) -> dict:
    instance = service.describe_instance(params.required("InstanceName"))
    return {"Success": True, "Instance": protocol.instance(instance)}
