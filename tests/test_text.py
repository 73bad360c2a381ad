"""Inbound hygiene: control characters stripped, patient identifiers masked."""

from __future__ import annotations

import pytest

from rounds.text import clean_inbound, compile_rules, first_line, strip_controls, truncate

SITE = compile_rules(
    [
        ("inpatient", r"(?:住院号|病案号)\s*[:：]?\s*(?P<id>[A-Za-z]{0,3}\d{5,12})"),
    ]
)
MASK = "[masked]"


@pytest.mark.parametrize(
    ("text", "expected", "rule"),
    [
        ("患者110101199003071234在等", "患者[masked]在等", "resident_id"),
        ("身份证11010119900307123X。", "身份证[masked]。", "resident_id"),
        ("身份证11010119900307123x", "身份证[masked]", "resident_id"),
        ("旧证号110101900307123号", "旧证号[masked]号", "resident_id"),
        ("电话13812345678联系", "电话[masked]联系", "mobile"),
        ("call 138-1234-5678 now", "call [masked] now", "mobile"),
        ("手机 138 1234 5678", "手机 [masked]", "mobile"),
        ("+8613812345678", "[masked]", "mobile"),
        ("住院号:ZY1234567 床3", "住院号:[masked] 床3", "inpatient"),
        ("病案号 00123456", "病案号 [masked]", "inpatient"),
    ],
)
def test_identifiers_are_masked_even_between_chinese_characters(text, expected, rule):
    cleaned = clean_inbound(text, SITE, MASK)

    assert cleaned.text == expected
    assert cleaned.masked == {rule: 1}


def test_the_sample_site_patterns_mask_a_long_number_whole(config):
    rules = compile_rules((p.name, p.regex) for p in config.privacy.patterns)

    assert clean_inbound("住院号 1234567890123456789", rules, MASK).text == "住院号 [masked]"


def test_resident_id_with_a_wrong_check_digit_is_masked_all_the_same():
    assert clean_inbound("11010119900307123 9".replace(" ", ""), SITE, MASK).text == MASK


@pytest.mark.parametrize(
    "text",
    [
        "ack INC-12",
        "门诊3号窗口打印机卡纸",
        "2026-12-03 08:00 机房温度 26℃",
        "IP 10.12.3.45 端口 1521",
        "工号 12345",
        "序列号 SN1234567890123456789",  # 19 digits fenced by letters: not an ID number
        "12345678901",  # 11 digits not starting 13-19 is no mainland mobile
    ],
)
def test_ordinary_numbers_are_left_alone(text):
    cleaned = clean_inbound(text, SITE, MASK)

    assert cleaned.text == text
    assert cleaned.masked_count == 0


def test_several_identifiers_are_counted():
    cleaned = clean_inbound("患者110101199003071234，电话13812345678，住院号ZY123456", SITE, MASK)

    assert cleaned.masked_count == 3
    assert "1101011990" not in cleaned.text and "13812345678" not in cleaned.text


def test_control_and_bidi_characters_are_removed_and_counted():
    text, removed = strip_controls("打印\x00机\x07卡纸\u202e反向\u2066隔离\u2069\x1b[31m")

    assert text == "打印机卡纸反向隔离[31m"
    assert removed == 6


def test_newlines_and_tabs_survive_and_crlf_becomes_newline():
    text, removed = strip_controls("第一行\r\n第二行\r第三行\twith tab")

    assert text == "第一行\n第二行\n第三行\twith tab"
    assert removed == 0


def test_truncate_keeps_the_limit_including_the_marker():
    text, cut = truncate("x" * 20_000, 4000, "…[cut]")

    assert cut is True
    assert len(text) == 4000
    assert text.endswith("…[cut]")
    assert truncate("short", 4000, "…[cut]") == ("short", False)


def test_first_line_is_the_title():
    assert first_line("\n\n  打印机卡纸  \n详细说明") == "打印机卡纸"
    assert len(first_line("很" * 200)) == 80
