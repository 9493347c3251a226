"""Hostile requests, correctly signed, over all 14 actions: each case is (id, action, parameters, expected
HTTP status, expected Code). The parameters replace or remove (None) those of the action's valid request.

Built from rules rather than listed one by one, so that every action meets every kind of bad value that
applies to it: pictures, filters, ids, numbers, booleans, regions, encodings.
"""

from __future__ import annotations

import base64

from tests.pictures import encode, noise

GOOD_PICTURE = base64.b64encode(encode(noise(150, 150, seed=11))).decode()
SMALL_PICTURE = base64.b64encode(encode(noise(60, 60, seed=12))).decode()  # under 100 px
WIDE_PICTURE = base64.b64encode(encode(noise(4097, 100, seed=13))).decode()  # over 4096 px

# The stored picture every case refers to (see the fixture): product "stored", picture "1.jpg".
VALID = {
    "AddImage": {"ProductId": "new", "PicName": "n.jpg", "PicContent": GOOD_PICTURE},
    "SearchImageByPic": {"PicContent": GOOD_PICTURE},
    "SearchImageByName": {"ProductId": "stored", "PicName": "1.jpg"},
    "SearchImageByFilter": {"Filter": "int_attr>0"},
    "SearchImageByText": {"Text": "a red shoe"},
    "CheckImageExists": {"ProductId": "stored", "PicName": "1.jpg"},
    "UpdateImage": {"ProductId": "stored", "PicName": "1.jpg", "IntAttr": "7"},
    "DeleteImage": {"ProductId": "stored", "PicName": "1.jpg"},
    "CompareSimilarByImage": {"PrimaryPicContent": GOOD_PICTURE, "SecondaryPicContent": GOOD_PICTURE},
    "Detail": {},
    "IncreaseInstance": {"BucketName": "hostile-local", "Path": "/p"},  # the fixture's location and folder
    "IncreaseList": {},
    "DumpMeta": {},
    "DumpMetaList": {},
}
ACTIONS = tuple(VALID)
PICTURE_FIELDS = {"AddImage": ["PicContent"], "SearchImageByPic": ["PicContent"],
                  "CompareSimilarByImage": ["PrimaryPicContent", "SecondaryPicContent"]}
KEY_ACTIONS = ("AddImage", "SearchImageByName", "CheckImageExists", "UpdateImage")
WINDOW_ACTIONS = ("SearchImageByPic", "SearchImageByName", "SearchImageByFilter")
FILTER_ACTIONS = ("SearchImageByPic", "SearchImageByName", "SearchImageByFilter")
INT_ATTR_ACTIONS = ("AddImage", "UpdateImage")

BAD_PICTURES = [
    ("empty", "", 400, "MissingParameter"),
    ("not-base64", "not base64 at all!", 400, "InvalidParameter"),
    ("base64-of-text", base64.b64encode(b"hello, this is no picture").decode(), 400, "InvalidImage"),
    ("truncated-base64", GOOD_PICTURE[:-3], 400, "InvalidParameter"),
    ("too-small", SMALL_PICTURE, 400, "InvalidImageSize"),
    ("too-wide", WIDE_PICTURE, 400, "InvalidImageSize"),
    ("ico", base64.b64encode(b"\x00\x00\x01\x00\x01\x00\x10\x10" + b"\x00" * 200).decode(), 400, "InvalidImage"),
    ("zeros", base64.b64encode(b"\x00" * 5000).decode(), 400, "InvalidImage"),
]
BAD_FILTERS = [
    ("sql-injection", "int_attr=1; DROP TABLE imagesearch.pictures", 400, "InvalidFilter"),
    ("quote-escape", 'str_attr="a" OR 1=1 --', 400, "InvalidFilter"),
    ("unknown-field", "price>3", 400, "InvalidFilter"),
    ("unbalanced", "(int_attr>1", 400, "InvalidFilter"),
    ("deep", "(" * 70 + "int_attr>1" + ")" * 70, 400, "InvalidFilter"),
    ("too-long", "int_attr>1 OR " * 400 + "int_attr>1", 400, "InvalidFilter"),
    ("out-of-range", "int_attr>99999999999", 400, "InvalidFilter"),
    ("string-on-int", 'int_attr="x"', 400, "InvalidFilter"),
    ("nul", "str_attr=\"a\x00b\"", 400, "InvalidFilter"),
    ("cyrillic-keyword", "int_attr>1 АND int_attr<5", 400, "InvalidFilter"),
]
BAD_KEYS = [
    ("empty-product", {"ProductId": ""}, 400, "MissingParameter"),
    ("long-product", {"ProductId": "p" * 513}, 400, "InvalidParameter"),
    ("nul-product", {"ProductId": "a\x00b"}, 400, "InvalidParameter"),
    ("empty-picname", {"PicName": ""}, 400, "MissingParameter"),
    ("long-picname", {"PicName": "日" * 513}, 400, "InvalidParameter"),
    ("nul-picname", {"PicName": "\x00"}, 400, "InvalidParameter"),
]
BAD_WINDOWS = [
    ("num-0", {"Num": "0"}, 400, "InvalidParameter"),
    ("num-101", {"Num": "101"}, 400, "OverflowMaxReturnNum"),
    ("num-negative", {"Num": "-5"}, 400, "InvalidParameter"),
    ("num-text", {"Num": "ten"}, 400, "InvalidParameter"),
    ("num-arabic-digits", {"Num": "١٠"}, 400, "InvalidParameter"),
    ("num-huge", {"Num": "99999999999999999999"}, 400, "OverflowMaxReturnNum"),
    ("start-500", {"Start": "500"}, 400, "InvalidStartParameter"),
    ("start-negative", {"Start": "-1"}, 400, "InvalidStartParameter"),
    ("window-over-500", {"Start": "450", "Num": "60"}, 400, "OverflowMaxResultNum"),
    ("start-float", {"Start": "1.5"}, 400, "InvalidParameter"),
]
BAD_INT_ATTRS = [
    ("int-overflow", {"IntAttr": "2147483648"}, 400, "InvalidParameter"),
    ("int-underflow", {"IntAttr2": "-2147483649"}, 400, "InvalidParameter"),
    ("int-text", {"IntAttr3": "seven"}, 400, "InvalidParameter"),
    ("int-unicode-digit", {"IntAttr4": "７"}, 400, "InvalidParameter"),
    ("str-too-long", {"StrAttr": "s" * 129}, 400, "InvalidParameter"),
    ("str-nul", {"StrAttr2": "a\x00"}, 400, "InvalidParameter"),
    ("custom-too-long", {"CustomContent": "c" * 4097}, 400, "InvalidParameter"),
]
BAD_SEARCH_OPTIONS = [
    ("threshold-2", {"ScoreThreshold": "2"}, 400, "InvalidParameter"),
    ("threshold-nan", {"ScoreThreshold": "nan"}, 400, "InvalidParameter"),
    ("threshold-text", {"ScoreThreshold": "high"}, 400, "InvalidParameter"),
    ("distinct-yes", {"DistinctProductId": "yes"}, 400, "InvalidParameter"),
]
BAD_PICTURE_OPTIONS = [
    ("crop-maybe", {"Crop": "maybe"}, 400, "InvalidParameter"),
    ("region-text", {"Region": "left"}, 400, "InvalidRegion"),
    ("region-outside", {"Region": "0,500,0,500"}, 400, "InvalidRegion"),
    ("region-empty-box", {"Region": "10,10,0,50"}, 400, "InvalidRegion"),
    ("region-arabic", {"Region": "٠,50,0,50"}, 400, "InvalidRegion"),
    ("category-unknown", {"CategoryId": "12345"}, None, None),  # generic instances ignore CategoryId: 200
    ("category-text", {"CategoryId": "shoes"}, 400, "InvalidParameter"),
]
BAD_IMPORTS = [
    ("no-bucket", {"BucketName": None}, 400, "MissingParameter"),
    ("unknown-bucket", {"BucketName": "no-such-location"}, 400, "InvalidParameter"),
    ("bucket-nul", {"BucketName": "a\x00"}, 400, "InvalidParameter"),
    ("no-path", {"Path": None}, 400, "MissingParameter"),
    ("path-relative", {"Path": "p"}, 400, "InvalidParameter"),
    ("path-dotdot", {"Path": "/../../etc"}, 400, "InvalidParameter"),
    ("path-inner-dotdot", {"Path": "/p/../../x"}, 400, "InvalidParameter"),
    ("path-backslash", {"Path": "/p\\..\\x"}, 400, "InvalidParameter"),
    ("path-nul", {"Path": "/p\x00"}, 400, "InvalidParameter"),
    ("path-long", {"Path": "/" + "a" * 1100}, 400, "InvalidParameter"),
    ("path-symlink-out", {"Path": "/out"}, 400, "InvalidParameter"),
    ("callback-ftp", {"CallbackAddress": "ftp://example.com/done"}, 400, "InvalidParameter"),
    ("callback-file", {"CallbackAddress": "file:///etc/passwd"}, 400, "InvalidParameter"),
    ("callback-loopback", {"CallbackAddress": "http://127.0.0.1:8080/"}, 400, "InvalidParameter"),
    ("callback-localhost", {"CallbackAddress": "http://localhost/"}, 400, "InvalidParameter"),
    ("callback-metadata", {"CallbackAddress": "http://169.254.169.254/latest/meta-data/"}, 400, "InvalidParameter"),
    ("callback-private", {"CallbackAddress": "https://10.0.0.8/hook"}, 400, "InvalidParameter"),
    ("callback-decimal-ip", {"CallbackAddress": "http://2130706433/"}, 400, "InvalidParameter"),
    ("callback-userinfo", {"CallbackAddress": "http://user:pw@example.com/"}, 400, "InvalidParameter"),
]
BAD_PAGES = [
    ("id-text", {"Id": "seven"}, 400, "InvalidParameter"),
    ("id-unknown", {"Id": "999999999"}, 400, "InvalidParameter"),
    ("id-over-bigint", {"Id": "99999999999999999999"}, 400, "InvalidParameter"),
    ("id-zero", {"Id": "0"}, 400, "InvalidParameter"),
    ("page-0", {"PageNumber": "0"}, 400, "InvalidParameter"),
    ("page-negative", {"PageNumber": "-1"}, 400, "InvalidParameter"),
    ("page-size-0", {"PageSize": "0"}, 400, "InvalidParameter"),
    ("page-size-text", {"PageSize": "ten"}, 400, "InvalidParameter"),
]
COMMON = [
    ("no-instance", {"InstanceName": None}, 400, "MissingParameter"),
    ("empty-instance", {"InstanceName": ""}, 400, "MissingParameter"),
    ("unknown-instance", {"InstanceName": "no-such-instance"}, 404, "InvalidInstance"),
    ("instance-nul", {"InstanceName": "a\x00b"}, 400, "InvalidParameter"),
    ("instance-long", {"InstanceName": "i" * 300}, 400, "InvalidParameter"),
    ("twice", {"__twice__": "InstanceName"}, 400, "InvalidParameter"),
]

# A header sent once more beside a valid signed request: (id, name, the other value, sent before the signed
# one?); "{length}" is the body's length. Each is refused as SignatureDoesNotMatch ("sent ... more than once")
# before the action is looked up, whatever the action: the signature would cover one value (or both joined)
# while the server or a proxy reads another. Host is the exception: HTTP/1.1 itself makes a second Host a
# malformed request (RFC 9112, 3.2), refused by the server's front before the app sees it (REFUSED_AS_HTTP).
# Sent byte for byte (tests/raw_http.py).
REPEATED_HEADERS = [
    ("content-type-before", "content-type", "multipart/form-data; boundary=x", True),
    ("content-type-after", "content-type", "text/plain", False),
    ("content-type-same", "content-type", "application/x-www-form-urlencoded", False),
    ("action-before", "x-acs-action", "DeleteImage", True),
    ("action-after", "x-acs-action", "Detail", False),
    ("version-same", "x-acs-version", "2020-12-14", False),
    ("date", "x-acs-date", "2020-01-01T00:00:00Z", True),
    ("nonce", "x-acs-signature-nonce", "another-nonce", False),
    ("content-sha256", "x-acs-content-sha256", "0" * 64, True),
    ("host", "host", "evil.example", True),
    ("authorization", "authorization", "ACS3-HMAC-SHA256 Credential=x,SignedHeaders=host,Signature=" + "0" * 64, True),
    ("content-length-same", "content-length", "{length}", False),
]
REFUSED_AS_HTTP = {"host": (400, "InvalidParameter", "malformed HTTP request: Found multiple Host: headers")}


def cases() -> list[tuple[str, str, dict, int | None, str | None]]:
    out = []

    def add(action, name, changes, status, code):
        out.append((f"{action}-{name}", action, changes, status, code))

    for action in ACTIONS:
        for name, changes, status, code in COMMON:
            add(action, name, changes, status, code)
    for action, fields in PICTURE_FIELDS.items():
        for field in fields:
            for name, value, status, code in BAD_PICTURES:
                add(action, f"{field}-{name}", {field: value}, status, code)
        if action != "CompareSimilarByImage":
            for name, changes, status, code in BAD_PICTURE_OPTIONS:
                add(action, name, changes, status, code)
    for action in KEY_ACTIONS:
        for name, changes, status, code in BAD_KEYS:
            add(action, name, changes, status, code)
    for action in WINDOW_ACTIONS:
        for name, changes, status, code in BAD_WINDOWS:
            add(action, name, changes, status, code)
    for action in FILTER_ACTIONS:
        for name, value, status, code in BAD_FILTERS:
            add(action, f"filter-{name}", {"Filter": value}, status, code)
    for action in INT_ATTR_ACTIONS:
        for name, changes, status, code in BAD_INT_ATTRS:
            add(action, name, changes, status, code)
    for action in ("SearchImageByPic", "SearchImageByName"):
        for name, changes, status, code in BAD_SEARCH_OPTIONS:
            add(action, name, changes, status, code)
    add("SearchImageByName", "missing-picture", {"PicName": "nope.jpg"}, 404, "NoSpecifiedSearchPic")
    add("UpdateImage", "missing-picture", {"PicName": "nope.jpg"}, 404, "NoSpecifiedSearchPic")
    add("UpdateImage", "nothing-to-update", {"IntAttr": None}, 400, "MissingParameter")
    add("DeleteImage", "no-product", {"ProductId": None, "PicName": None}, 400, "MissingParameter")
    add("DeleteImage", "filter-with-product", {"IsDeleteByFilter": "true", "Filter": "int_attr>0"}, 400, "InvalidParameter")
    add("DeleteImage", "filter-missing", {"IsDeleteByFilter": "true", "ProductId": None, "PicName": None}, 400, "MissingParameter")
    add("DeleteImage", "filter-bad", {"IsDeleteByFilter": "true", "ProductId": None, "PicName": None, "Filter": "x"}, 400, "InvalidFilter")
    add("DeleteImage", "by-filter-yes", {"IsDeleteByFilter": "yes"}, 400, "InvalidParameter")
    add("SearchImageByFilter", "filter-empty", {"Filter": ""}, 400, "MissingParameter")
    add("SearchImageByText", "text-empty", {"Text": ""}, 400, "MissingParameter")
    add("SearchImageByText", "no-text-model", {}, 400, "InvalidParameter")
    add("SearchImageByText", "text-long", {"Text": "t" * 513}, 400, "InvalidParameter")
    for name, changes, status, code in BAD_IMPORTS:
        add("IncreaseInstance", name, changes, status, code)
    for action, largest in (("IncreaseList", 100), ("DumpMetaList", 30)):
        for name, changes, status, code in BAD_PAGES + [("page-size-over", {"PageSize": str(largest + 1)}, 400,
                                                         "InvalidParameter")]:
            add(action, name, changes, status, code)
    add("IncreaseList", "bucket-nul", {"BucketName": "a\x00"}, 400, "InvalidParameter")
    add("IncreaseList", "path-nul", {"Path": "/a\x00"}, 400, "InvalidParameter")
    add("IncreaseList", "path-long", {"Path": "/" + "p" * 1100}, 400, "InvalidParameter")
    return out
