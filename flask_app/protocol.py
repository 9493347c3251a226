"""The Image Search 2020-12-14 protocol's side of things: HTTP statuses by error Code, base64 pictures,
and the shapes of responses (../shared/spec/api.md). The library speaks Python; this module speaks wire."""

from __future__ import annotations

import base64
import binascii

from imagesearch_pg import categories
from imagesearch_pg.errors import ImageSearchError, InvalidParameter
from imagesearch_pg.service.models import Instance, Match, PicInfo, SearchResult, public_record

VERSION = "2020-12-14"

# The spec's status for each Code; a Code not listed is a bug (500).
HTTP_STATUS = {
    "InvalidParameter": 400, "InvalidVersion": 400, "MissingParameter": 400, "InvalidImage": 400, "InvalidImageFormat": 400,
    "InvalidImageSize": 400, "InvalidFilter": 400, "InvalidCategory": 400, "InvalidRegion": 400,
    "OverflowMaxReturnNum": 400, "OverflowMaxResultNum": 400, "InvalidStartParameter": 400,
    "InvalidAccessKeyId": 403, "SignatureDoesNotMatch": 403, "RequestExpired": 403, "SignatureNonceUsed": 403,
    "InvalidTimeStamp.Format": 400, "InvalidTimeStamp.Expired": 400,
    "NoPermission": 403, "InvalidInstance": 404, "NoSpecifiedSearchPic": 404, "InstanceStatusError": 409,
    "Throttling": 429, "ServiceUnavailable": 503,
}


def http_status(error: ImageSearchError) -> int:
    return HTTP_STATUS.get(error.code, 500)


def picture(text: str, parameter: str = "PicContent") -> bytes:
    """A picture sent as base64 text."""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidParameter(f"{parameter} is not valid base64") from None


def error(request_id: str, code: str, message: str) -> dict:
    return {"RequestId": request_id, "Code": code, "Message": message}


def done() -> dict:
    """The body of a write that succeeded."""
    return {"Success": True, "Code": 0, "Message": "success"}


def found(**fields) -> dict:
    """The body of a read that succeeded."""
    return {"Success": True, "Code": 0, "Msg": "success", **fields}


def match(m: Match) -> dict:
    """A result: attributes without a value are left out."""
    shown = public_record({k: v for k, v in m.as_dict().items() if v is not None})
    if m.score is not None:
        shown["SortExprValues"] = f"{m.score};0"
    return shown


def pic_info(info: PicInfo) -> dict:
    return {
        "CategoryId": info.category_id,
        "Region": info.region,
        "MultiRegion": [{"Region": region} for region in info.multi_region],
        "AllCategories": _all_categories(),
    }


def _all_categories() -> list[dict]:
    return [{"Id": cid, "Name": name} for cid, name in categories.CATEGORIES.items()]


def search(result: SearchResult) -> dict:
    body = found(
        Head={"DocsFound": result.docs_found, "DocsReturn": result.docs_return, "SearchTime": result.search_time_ms},
        Auctions=[match(m) for m in result.matches],
    )
    if result.pic_info is not None:
        body["PicInfo"] = pic_info(result.pic_info)
    return body


# Detail's Instance.ServiceType, as the SDKs' models document the codes (where 3 and 7 both mean trademark).
SERVICE_TYPE_CODES = {"product": 0, "generic": 1, "fabric": 2, "trademark": 3}
CAPACITY_UNIT = 10_000  # Detail's Capacity counts pictures in ten thousands


def instance(i: Instance) -> dict:
    """Detail's Instance, typed as the SDKs' models declare it: the capacity in ten thousands (rounded up),
    the times as text of milliseconds since the epoch (the encoder is this server's own, shown by the CLI)."""
    shown = {"Name": i.name, "ServiceType": SERVICE_TYPE_CODES[i.service_type], "Region": i.region,
             "Capacity": -(-i.capacity // CAPACITY_UNIT), "Qps": i.qps, "TotalCount": i.picture_count,
             "UtcCreate": str(public_record({"t": i.created_at})["T"])}
    if i.expires_at is not None:
        shown["UtcExpireTime"] = str(public_record({"t": i.expires_at})["T"])
    return shown


def text_search(result: SearchResult) -> dict:
    """SearchImageByText's answer: its PicInfo has the categories alone (there is no picture)."""
    return {**search(result), "PicInfo": {"AllCategories": _all_categories()}}
