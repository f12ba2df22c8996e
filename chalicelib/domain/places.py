"""Fixed lists the away flows count by: mainland provinces, transport, train and flight numbers.

Destinations are chosen from a fixed list so that "who is away, where" counts 山东 and 山东省 as one
place. The list is the 31 provincial-level divisions of the mainland (GB/T 2260), in its order;
the catalogue carries it as the options of a ``location`` field (the H5 renders them).
"""

from __future__ import annotations

import re

MAINLAND_PROVINCES: tuple[str, ...] = (
    "北京市", "天津市", "河北省", "山西省", "内蒙古自治区",
    "辽宁省", "吉林省", "黑龙江省",
    "上海市", "江苏省", "浙江省", "安徽省", "福建省", "江西省", "山东省",
    "河南省", "湖北省", "湖南省", "广东省", "广西壮族自治区", "海南省",
    "重庆市", "四川省", "贵州省", "云南省", "西藏自治区",
    "陕西省", "甘肃省", "青海省", "宁夏回族自治区", "新疆维吾尔自治区",
)
HOME_PROVINCE = "山东省"
HOME_CITY = "济南市"

# China Railway train numbers: a class letter (G high-speed, C intercity, D EMU, Z direct, T express,
# K fast, S suburban, Y tourist, L temporary) and 1-4 digits, or 4 digits for ordinary trains.
_TRAIN = re.compile(r"(?:[GCDZTKSYL][1-9][0-9]{0,3}|[1-9][0-9]{3})")
# IATA flight numbers: a two-character airline designator (letters, or a letter and a digit
# either way round: CA, MU, 3U, G5) and 1-4 digits, optionally an operational suffix letter.
_FLIGHT = re.compile(r"(?:[A-Z]{2}|[A-Z][0-9]|[0-9][A-Z])[0-9]{1,4}[A-Z]?")
TRIP_NUMBER_NEEDED = frozenset({"train", "plane"})
# Ways of travelling the away flows count by (the catalogue's transport options are among them).
TRANSPORTS: tuple[str, ...] = ("walk", "bus", "train", "plane", "coach", "car", "other")


def trip_number_problem(transport: str, number: str | None) -> str | None:
    """Why a train or flight number does not fit the transport (None: fine).

    Train and plane need one (``G1234``, ``K51``, ``1461``; ``CA1234``, ``3U8888``); other
    transport takes none or any short text.
    """
    if transport not in TRIP_NUMBER_NEEDED:
        return None
    if not number:
        return "required for train and plane"
    text = number.strip().upper()
    if transport == "train" and not _TRAIN.fullmatch(text):
        return "not a train number (e.g. G1234, K51, 1461)"
    if transport == "plane" and not _FLIGHT.fullmatch(text):
        return "not a flight number (e.g. CA1234, 3U8888)"
    return None


def in_jinan(place: dict[str, str] | None) -> bool:
    """Whether a destination is Jinan itself."""
    return bool(place) and place.get("province") == HOME_PROVINCE and place.get("city", "").removesuffix(
        "市") == HOME_CITY.removesuffix("市")
