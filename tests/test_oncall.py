"""The duty rota: who is on duty at any moment, whichever process asks."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from rounds.config import OncallSection
from rounds.itsm.oncall import Rota

ZONE = ZoneInfo("Asia/Shanghai")


def at(day: int, hour: int, minute: int = 0, month: int = 1) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=ZONE)


def rota(handover: str | list[str], people: list[str] | None = None) -> Rota:
    section = OncallSection(
        rotation=people or ["a", "b", "c"], handover=handover, start=date(2026, 1, 5)
    )
    return Rota(section, ZONE)


def test_daily_handover_passes_duty_to_the_next_person():
    r = rota("08:00")

    assert r.on_duty(at(5, 8)) == "a"
    assert r.on_duty(at(6, 7, 59)) == "a"
    assert r.on_duty(at(6, 8)) == "b"
    assert r.on_duty(at(7, 9)) == "c"
    assert r.on_duty(at(8, 9)) == "a"


def test_shift_bounds_run_from_handover_to_handover():
    shift = rota("08:00").shift_at(at(6, 3))

    assert (shift.person, shift.start, shift.end) == ("a", at(5, 8), at(6, 8))


def test_day_and_night_shifts_alternate_people():
    r = rota(["20:00", "08:00"], ["day", "night"])

    assert r.on_duty(at(5, 9)) == "day"
    assert r.on_duty(at(5, 21)) == "night"
    assert r.on_duty(at(6, 7)) == "night"
    assert r.on_duty(at(6, 8, 1)) == "day"
    assert r.next_shift(at(5, 9)).person == "night"
    assert r.next_shift(at(5, 9)).start == at(5, 20)


def test_the_rota_uses_the_hospital_time_zone():
    r = rota("08:00")
    utc_midnight = datetime(2026, 1, 6, 0, 30, tzinfo=ZoneInfo("UTC"))  # 08:30 in Shanghai

    assert r.on_duty(utc_midnight) == "b"


def test_an_empty_rotation_has_nobody_on_duty():
    r = Rota(OncallSection(rotation=[], handover="08:00", start=date(2026, 1, 5)), ZONE)

    assert r.on_duty(at(6, 9)) is None
    assert r.next_shift(at(6, 9)) is None
