"""Priority = impact x urgency, guessed from the report by the configured rules."""

from __future__ import annotations

import pytest

from rounds.config import PriorityRule, PrioritySection
from rounds.itsm.priority import MATRIX, PriorityRules, keyword_pattern, matrix, more_urgent


@pytest.fixture
def rules(config):
    return PriorityRules(config.priority)


def test_matrix_is_domain_table():
    assert [[matrix(i, u) for u in ("U1", "U2", "U3")] for i in ("I1", "I2", "I3", "I4")] == [
        ["P1", "P1", "P2"],
        ["P1", "P2", "P3"],
        ["P2", "P3", "P4"],
        ["P3", "P4", "P4"],
    ]
    assert set(MATRIX) == {"I1", "I2", "I3", "I4"}


@pytest.mark.parametrize(
    ("text", "priority", "major", "system"),
    [
        # Outpatient HIS down: P1 and a major incident (hard override).
        ("HIS 收费系统无法登录", "P1", True, "HIS"),
        ("门诊挂号全部卡死了", "P1", True, "HIS"),
        ("HIS is down in the whole outpatient hall", "P1", True, "HIS"),
        # A core system named without an outage word: reach unknown (I2); intermittent (U3).
        ("LIS 检验报告偶尔打印慢", "P3", False, "LIS"),
        ("PACS 影像调不出来", "P2", False, "PACS"),
        # A core system failing outright.
        ("医保结算失败", "P1", False, "医保"),
        ("PACS 全部宕机", "P1", False, "PACS"),
        ("全院网络中断", "P1", False, "network"),
        ("3楼病区网络断了", "P2", False, "network"),
        # One printer: one device, can wait a little.
        ("门诊3号窗口打印机卡纸", "P4", False, "terminal"),
        # A printer at a billing window: at least P2 (hard override).
        ("收费窗口打印机卡纸", "P2", False, "terminal"),
        # One ICU terminal: at least P2.
        ("ICU 护士站一台电脑蓝屏", "P2", False, "terminal"),
        ("ICU 一台电脑键盘坏了", "P2", False, "terminal"),
        # Security: P1 by the separate route.
        ("财务科电脑中了勒索病毒", "P1", False, "security"),
        # Explicitly not urgent.
        ("不急，帮忙申请一个打印机驱动", "P4", False, "terminal"),
        # A place name is not a system outage: the device decides the reach.
        ("护士站的打印机用不了", "P3", False, "terminal"),
        ("挂号处的电脑很慢", "P2", False, "HIS"),
        ("医生站鼠标用不了", "P3", False, "terminal"),
        # Nothing recognised: the defaults (I3, U2) give P3.
        ("电脑有点问题", "P3", False, None),
    ],
)
def test_reports_get_the_priority_a_duty_engineer_would_give(rules, text, priority, major, system):
    found = rules.assess(text)

    assert (found.priority, found.major, found.system) == (priority, major, system)


def test_latin_keywords_match_whole_words_only(rules):
    assert rules.assess("this printer is fine").system == "terminal"
    assert "his" not in rules.assess("this is slow").rules
    assert not keyword_pattern("HIS").search("this")
    assert not keyword_pattern("HIS").search("HISTORY")
    assert keyword_pattern("HIS").search("HIS系统打不开")
    assert keyword_pattern("HIS").search("(HIS)")


def test_acronyms_match_only_in_capitals_and_words_in_any_case():
    assert not keyword_pattern("HIS").search("his computer")
    assert keyword_pattern("printer").search("The PRINTER jammed")
    assert keyword_pattern("data leak").search("possible Data Leak today")


def test_chinese_keywords_match_inside_words():
    assert keyword_pattern("打印机").search("门诊打印机卡纸")
    assert keyword_pattern("收费").search("门诊收费处")


def test_first_rule_decides_impact_and_floors_apply_unless_their_claim_was_overruled():
    section = PrioritySection(
        default_impact="I3",
        default_urgency="U2",
        rules=[
            PriorityRule(name="a", keywords=["alpha"], impact="I4"),
            PriorityRule(name="b", keywords=["alpha"], impact="I1", min_priority="P1"),
            PriorityRule(name="c", keywords=["beta"], min_priority="P2"),
            PriorityRule(name="d", keywords=["gamma"], min_priority="P3"),
        ],
    )
    rules = PriorityRules(section)

    assert rules.assess("alpha").priority == "P4"  # b claimed I1, but a decided I4
    assert rules.assess("alpha gamma").priority == "P3"  # d claims no impact: it applies
    assert rules.assess("alpha beta gamma").priority == "P2"  # the most urgent floor wins
    assert rules.assess("alpha beta").rules == ("a", "b", "c")


def test_also_keywords_are_required_when_given():
    section = PrioritySection(
        default_impact="I3",
        default_urgency="U2",
        rules=[
            PriorityRule(name="down", keywords=["HIS"], also_keywords=["down"], major=True),
        ],
    )
    rules = PriorityRules(section)

    assert rules.assess("HIS down").major is True
    assert rules.assess("HIS question").major is False


def test_more_urgent_compares_priorities():
    assert more_urgent("P3", "P1") == "P1"
    assert more_urgent("P2", "P4") == "P2"


def test_a_wider_claim_that_did_not_stand_adds_no_floor(rules):
    # The reporter said: one device, can wait. "HIS ... 打不开" would claim an outage.
    found = rules.assess("HIS 收费窗口的打印机打不开", impact="I4", urgency="U3")

    assert (found.priority, found.major) == ("P2", False)  # the billing-window floor only


def test_a_wide_impact_given_by_the_reporter_keeps_the_major_mark(rules):
    found = rules.assess("HIS 收费系统打不开", impact="I1", urgency="U1")

    assert (found.priority, found.major) == ("P1", True)
