"""Crontab lines mean what they mean in crontab(5), not APScheduler 3's Monday-first numbers."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from tracker.cron import cron_trigger, crontab_weekdays

PARIS = ZoneInfo("Europe/Paris")
SATURDAY_NOON = datetime(2026, 11, 21, 12, 0, 30, tzinfo=PARIS)


def fires(expression: str, after: datetime = SATURDAY_NOON, count: int = 3) -> list[str]:
    trigger, moment, out = cron_trigger(expression, PARIS), after, []
    for _ in range(count):
        moment = trigger.get_next_fire_time(None, moment)
        out.append(f"{moment:%a %H:%M}")
        moment = moment.replace(second=1)
    return out


def test_weekday_numbers_follow_crontab_with_sunday_as_0_and_7() -> None:
    assert fires("0 6 * * 1", count=2) == ["Mon 06:00", "Mon 06:00"]
    assert fires("0 6 * * 0", count=1) == fires("0 6 * * 7", count=1) == ["Sun 06:00"]
    assert fires("30 7 * * 1-5") == ["Mon 07:30", "Tue 07:30", "Wed 07:30"]
    assert fires("0 6 * * mon") == ["Mon 06:00"] * 3


@pytest.mark.parametrize(("field", "names"), [
    ("1", "mon"), ("0", "sun"), ("7", "sun"), ("1-5", "mon,tue,wed,thu,fri"),
    ("*/2", "sun,tue,thu,sat"), ("1,3,5", "mon,wed,fri"), ("0,7", "sun"),
    ("mon-fri", "mon-fri"), ("sat,sun", "sat,sun"), ("*", "*"),
])
def test_weekday_fields_are_rewritten_as_names(field: str, names: str) -> None:
    assert crontab_weekdays(field) == names


def test_the_other_fields_and_the_time_zone_are_apscheduler_cron() -> None:
    assert fires("0 */6 * * *") == ["Sat 18:00", "Sun 00:00", "Sun 06:00"]
    trigger = cron_trigger("0 7 * * *", PARIS)
    summer = trigger.get_next_fire_time(None, datetime(2026, 7, 1, tzinfo=PARIS))
    assert summer.utcoffset().total_seconds() == 7200 and summer.hour == 7


@pytest.mark.parametrize("bad", ["every 6 hours", "0 6 * *", "0 6 * * * *", "0 25 * * *",
                                 "0 6 * * 8", "0 6 * * 5-2", "61 * * * *", "0 6 * * funday"])
def test_bad_lines_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        cron_trigger(bad, PARIS)
