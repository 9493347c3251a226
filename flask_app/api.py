"""POST /: the Image Search 2020-12-14 protocol (../shared/spec/api.md), as the official SDKs speak it.

One endpoint; the action comes in the x-acs-action header (or the Action query parameter), parameters in
the form body and the query string. Each action is a small function from Params to the response body; the
service layer does the work. Every response carries a RequestId; errors are {RequestId, Code, Message}.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Callable

from flask import Blueprint, current_app, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from flask_app import metrics, signature
from flask_app.extensions import get_access_keys, get_service
from flask_app.params import Params
from imagesearch_pg import categories
from imagesearch_pg.errors import (
    ActionNotAvailable,
    ImageSearchError,
    InvalidParameter,
    MissingParameter,
    NoPermission,
    SignatureNonceUsed,
)
from imagesearch_pg.service import ImageSearch
from imagesearch_pg.service.models import Auction, PicInfo, SearchResult, protocol_name

log = logging.getLogger(__name__)
bp = Blueprint("api", __name__)

ACTIONS: dict[str, Callable[[ImageSearch, Params], dict]] = {}
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
        if not name:
            raise MissingParameter("the action is missing: send it in the x-acs-action header")
        handler = ACTIONS.get(name)
        if handler is None:
            raise InvalidParameter(f"unknown action {name[:64]!r}; known: {', '.join(sorted(ACTIONS))}")
        body = request.get_data(cache=True)  # limited by MAX_CONTENT_LENGTH before it is read whole
        params = Params({**request.args.to_dict(), **request.form.to_dict()})
        if not current_app.config["INSECURE_NO_AUTH"]:
            _authenticate(body, params)
        service = get_service()
        if name in RATE_KINDS:
            service.admit(params.required("InstanceName"), RATE_KINDS[name])
        result = handler(service, params)
    except ImageSearchError as exc:
        return _error(request_id, exc.code, exc.message, exc.http_status)
    except RequestEntityTooLarge:
        limit = current_app.config["MAX_CONTENT_LENGTH"]
        return _error(request_id, "InvalidParameter", f"the request body is over {limit // (1024 * 1024)} MB", 413)
    except Exception:  # a bug: logged with its traceback, answered in the protocol's shape
        log.exception("request failed", extra={"request_id": request_id})
        return _error(request_id, "InternalError", f"internal error; quote RequestId {request_id} when reporting it", 500)
    return jsonify({"RequestId": request_id, **result}), 200, "OK"


def _error(request_id: str, code: str, message: str, status: int):
    return jsonify({"RequestId": request_id, "Code": code, "Message": message}), status, code


def _authenticate(body: bytes, params: Params) -> None:
    keys = get_access_keys()
    headers = {name.lower(): value for name, value in request.headers.items()}
    signed = signature.verify(request.method, request.path, request.query_string.decode("latin-1"), headers, body,
                              keys.credential)
    if not keys.first_use_of_nonce(signed.nonce, signature.DATE_WINDOW):
        raise SignatureNonceUsed("this x-acs-signature-nonce was already used: each request needs a new one")
    instance = params.get("InstanceName")
    if instance is not None and not signed.credential.allows(instance):
        raise NoPermission(f"AccessKey {signed.key_id} may not use instance {instance[:64]!r}")


# ---- response pieces --------------------------------------------------------------------------------


def _auction(a: Auction) -> dict:
    out = {"ProductId": a.product_id, "PicName": a.pic_name, "CategoryId": a.category_id}
    out.update({protocol_name(k): v for k, v in a.attributes.as_dict().items() if v is not None})
    if a.score is not None:
        out["Score"] = a.score
        out["SortExprValues"] = a.sort_expr_values
    return out


def _pic_info(info: PicInfo) -> dict:
    return {
        "CategoryId": info.category_id,
        "Region": info.region,
        "MultiRegion": [{"Region": region} for region in info.multi_region],
        "AllCategories": [{"Id": cid, "Name": name} for cid, name in categories.CATEGORIES.items()],
    }


def _search(result: SearchResult) -> dict:
    body = {
        "Success": True,
        "Code": 0,
        "Msg": "success",
        "Head": {"DocsFound": result.docs_found, "DocsReturn": result.docs_return, "SearchTime": result.search_time_ms},
        "Auctions": [_auction(a) for a in result.auctions],
    }
    if result.pic_info is not None:
        body["PicInfo"] = _pic_info(result.pic_info)
    return body


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
        params.required("PicContent"),
        category_id=params.int("CategoryId"),
        crop=params.bool("Crop", True),
        region=params.get("Region"),
        attributes=params.attributes(),
    )
    return {"Success": True, "Code": 0, "Message": "success", "PicInfo": _pic_info(info)}


@action("SearchImageByPic", rate="search")
def search_image_by_pic(service: ImageSearch, params: Params) -> dict:
    return _search(service.search_by_picture(
        params.required("InstanceName"),
        params.required("PicContent"),
        category_id=params.int("CategoryId"),
        crop=params.bool("Crop", True),
        region=params.get("Region"),
        **_search_options(params),
    ))


@action("SearchImageByName", rate="search")
def search_image_by_name(service: ImageSearch, params: Params) -> dict:
    return _search(service.search_by_name(
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
    return {"Success": True, "Code": 0, "Msg": "success", "Auctions": [_auction(a) for a in result.auctions]}


@action("SearchImageByText", rate="search")
def search_image_by_text(service: ImageSearch, params: Params) -> dict:
    return _search(service.search_by_text(params.required("InstanceName"), params.required("Text"),
                                          **_search_options(params)))


@action("CheckImageExists", rate="search")
def check_image_exists(service: ImageSearch, params: Params) -> dict:
    found = service.check_image_exists(
        params.required("InstanceName"), params.required("ProductId"), params.required("PicName")
    )
    body = {"Success": True, "Code": 0, "Msg": "success", "Exists": found is not None}
    if found is not None:
        body["Auctions"] = _auction(found)
    return body


@action("UpdateImage", rate="add")
def update_image(service: ImageSearch, params: Params) -> dict:
    service.update_image(
        params.required("InstanceName"), params.required("ProductId"), params.required("PicName"),
        params.attributes(),
    )
    return {"Success": True, "Code": 0, "Message": "success"}


@action("CompareSimilarByImage", rate="search")
def compare_similar_by_image(service: ImageSearch, params: Params) -> dict:
    score = service.compare_pictures(
        params.required("InstanceName"), params.required("PrimaryPicContent"), params.required("SecondaryPicContent")
    )
    return {"Success": True, "Code": 0, "Msg": "success", "Score": score}


def _not_yet(name: str):
    def handler(service: ImageSearch, params: Params) -> dict:
        service.describe_instance(params.required("InstanceName"))
        raise ActionNotAvailable(
            f"{name} (batch import and metadata export) is not available yet in this version of imagesearch-pg"
        )

    ACTIONS[name] = handler


for _name in ("IncreaseInstance", "IncreaseList", "DumpMeta", "DumpMetaList"):
    _not_yet(_name)


@action("DeleteImage", rate="delete")
def delete_image(service: ImageSearch, params: Params) -> dict:
    instance = params.required("InstanceName")
    if params.bool("IsDeleteByFilter", False):
        deleted = service.delete_image(instance, filter=params.required("Filter"))
    else:
        deleted = service.delete_image(instance, params.required("ProductId"), params.get("PicName"))
    return {"Success": True, "Code": 0, "Message": "success", "Data": {"PicNames": deleted.pic_names}}


@action("Detail")
def detail(service: ImageSearch, params: Params) -> dict:
    instance = service.describe_instance(params.required("InstanceName"))
    return {
        "Success": True,
        "Instance": {
            "Name": instance.name,
            "ServiceType": instance.service_type,
            "Region": instance.region,
            "Capacity": instance.capacity,
            "Qps": instance.qps,
            "TotalCount": instance.picture_count,
            "UtcCreate": int(instance.created_at.timestamp() * 1000),
            "UtcExpireTime": None if instance.expires_at is None else int(instance.expires_at.timestamp() * 1000),
        },
    }
