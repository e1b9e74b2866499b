"""Cron expressions as operators write them, turned into APScheduler 3 triggers.

APScheduler 3 numbers weekdays from Monday = 0, while crontab(5) has Sunday = 0 (and 7), so
`CronTrigger.from_crontab("0 6 * * 1")` would fire on Tuesdays. Numeric weekdays are
rewritten as names (which mean the same to both) before the trigger is built.
"""

from __future__ import annotations

import re
from datetime import tzinfo

from apscheduler.triggers.cron import CronTrigger

CRON_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
NUMERIC = re.compile(r"^(\*|\d+)(?:-(\d+))?(?:/(\d+))?$")


def cron_trigger(expression: str, timezone: tzinfo) -> CronTrigger:
    """A trigger for a five-field crontab line; ValueError with a readable reason if bad."""
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"expected 5 fields (minute hour day month weekday), got {len(fields)}")
    minute, hour, day, month, weekday = fields
    return CronTrigger(minute=minute, hour=hour, day=day, month=month,
                       day_of_week=crontab_weekdays(weekday), timezone=timezone)


def crontab_weekdays(field: str) -> str:
    """Rewrite crontab weekday numbers (0 or 7 = Sunday) as names; names pass through."""
    if field == "*":
        return field
    out: list[str] = []
    for part in field.split(","):
        found = NUMERIC.match(part)
        if not found:
            out.append(part)  # names, name ranges: APScheduler reads them as cron does
            continue
        first, last, step = found.groups()
        low = 0 if first == "*" else int(first)
        high = 7 if first == "*" else int(last) if last else low
        if not (0 <= low <= 7 and 0 <= high <= 7) or low > high or step == "0":
            raise ValueError(f"weekday {part!r} is out of range (0-7, 0 and 7 are Sunday)")
        if last is None and step and first != "*":
            high = 7  # "1/2" in cron means from Monday, every second day
        days = range(low, high + 1, int(step) if step else 1)
        out.extend(CRON_NAMES[d % 7] for d in days)
    return ",".join(dict.fromkeys(out))
