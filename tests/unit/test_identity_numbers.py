"""GB 11643 ID numbers, mobile numbers and masking."""

import pytest

from chalicelib.domain.identity import (
    InvalidIdentity,
    id_check_char,
    mask_id_number,
    mask_mobile,
    normalise_id_number,
    normalise_mobile,
)


def test_a_published_example_number_validates():
    # The worked example of GB 11643-1999: 11010519491231002X
    assert id_check_char("11010519491231002") == "X"
    assert normalise_id_number(" 11010519491231002x ") == "11010519491231002X"


@pytest.mark.parametrize(
    ("number", "reason"),
    [
        ("110105194912310021", "check character"),
        ("11010519491331002X", "birth date"),
        ("11010529491231002X", "birth date"),
        ("1101051949123100", "17 digits"),
        ("11010519491231002Y", "17 digits"),
    ],
)
def test_bad_numbers_are_refused_without_repeating_them(number, reason):
    with pytest.raises(InvalidIdentity) as raised:
        normalise_id_number(number)
    assert reason in str(raised.value)
    assert number not in str(raised.value)


def test_mobiles():
    assert normalise_mobile("+86 138-0013-8000") == "13800138000"
    with pytest.raises(InvalidIdentity):
        normalise_mobile("12800138000")


def test_masks_keep_only_what_identifies_the_region_or_the_line():
    assert mask_id_number("370102199001011234") == "370102********1234"
    assert mask_mobile("13800138000") == "138****8000"
    assert mask_id_number("123") == "***"
