"""The emulator's own list of tunable base models: adapter sizes, methods and lifecycle.

An independent reading of Google's pages (read 2026-12-03; the research notes of issue 13 and
`reconciler/data/models.yaml` cite them), deliberately not shared with the reconciler's catalog:
a client and an emulator reading one list could agree on a wrong model. Sources:

- adapter sizes: the supervised-tuning page (3.x and 2.5 Flash/Flash-Lite 1-16, 2.5 Pro and 2.0
  1-8, 1.5 Pro 1|4, 1.5 Flash 1|4|8|16); none documents 32 for Gemini;
- retirement dates: the model-versions pages (3.x "or later"; the 2.5 family 2026-10-20; 2.0
  Flash 2026-02-05, Flash-Lite 2026-02-25; 1.5 Pro 2025-09-24), and "one month before the
  retirement date, new access to the model is blocked for ... tuning"; 1.5 Flash closed to new
  projects on 2025-04-29 (migrate-to-v2 page);
- methods: preference tuning is listed for 2.5 Flash and Flash-Lite only, continuous tuning for
  3.5 Flash, 3.1 Flash-Lite and the 2.5 family; where no page settles a method (preference on
  3.x) the emulator accepts it rather than refuse what the service may allow.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

ADAPTER_SIZES = {
    "ADAPTER_SIZE_UNSPECIFIED": 0,
    "ADAPTER_SIZE_ONE": 1,
    "ADAPTER_SIZE_TWO": 6,
    "ADAPTER_SIZE_FOUR": 2,
    "ADAPTER_SIZE_EIGHT": 3,
    "ADAPTER_SIZE_SIXTEEN": 4,
    "ADAPTER_SIZE_THIRTY_TWO": 5,
}  # name -> proto number (TWO is 6: it was added later)
_BY_SIZE = {
    1: "ADAPTER_SIZE_ONE",
    2: "ADAPTER_SIZE_TWO",
    4: "ADAPTER_SIZE_FOUR",
    8: "ADAPTER_SIZE_EIGHT",
    16: "ADAPTER_SIZE_SIXTEEN",
    32: "ADAPTER_SIZE_THIRTY_TWO",
}


def adapters(*sizes: int) -> frozenset[str]:
    """The enum names of adapter sizes given as numbers."""
    return frozenset(_BY_SIZE[size] for size in sizes)


def month_before(day: dt.date) -> dt.date:
    """The same day a calendar month earlier (clamped to that month's last day)."""
    year, month = (day.year, day.month - 1) if day.month > 1 else (day.year - 1, 12)
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


@dataclass(frozen=True)
class TunableModel:
    """What the emulated service accepts for one base model."""

    adapter_sizes: frozenset[str]  # supervised tuning
    retires: dt.date | None = None  # None: no date found, never refused
    closes: dt.date | None = None  # new tuning closed; default: a month before `retires`
    preference: bool = True  # preferenceOptimizationSpec accepted
    preference_adapter_sizes: frozenset[str] | None = None  # None: as supervised
    continuous: bool = True  # preTunedModel accepted

    def tuning_closes(self, retires: dt.date | None = None) -> dt.date | None:
        """The first day new tuning is refused, for this or an overriding retirement date."""
        if retires is not None:
            return month_before(retires)
        if self.closes is not None:
            return self.closes
        return month_before(self.retires) if self.retires else None


_ONE_TO_16 = adapters(1, 2, 4, 8, 16)
_ONE_TO_8 = adapters(1, 2, 4, 8)
_2_5 = dt.date(2026, 10, 20)
TUNABLE_MODELS: Mapping[str, TunableModel] = {
    "gemini-3.5-flash": TunableModel(_ONE_TO_16, dt.date(2027, 5, 19)),
    "gemini-3.5-flash-lite": TunableModel(_ONE_TO_16, dt.date(2027, 7, 21)),
    "gemini-3.1-flash-lite": TunableModel(_ONE_TO_16, dt.date(2027, 5, 7)),
    "gemini-2.5-pro": TunableModel(_ONE_TO_8, _2_5, preference=False),
    "gemini-2.5-flash": TunableModel(_ONE_TO_16, _2_5),
    "gemini-2.5-flash-lite": TunableModel(_ONE_TO_16, _2_5),
    "gemini-2.0-flash-001": TunableModel(
        _ONE_TO_8, dt.date(2026, 2, 5), preference=False, continuous=False
    ),
    "gemini-2.0-flash-lite-001": TunableModel(
        _ONE_TO_8, dt.date(2026, 2, 25), preference=False, continuous=False
    ),
    "gemini-1.5-pro-002": TunableModel(
        adapters(1, 4), dt.date(2025, 9, 24), preference=False, continuous=False
    ),
    "gemini-1.5-flash-002": TunableModel(
        adapters(1, 4, 8, 16), closes=dt.date(2025, 4, 29), preference=False, continuous=False
    ),
    # No retirement date found for these two; no adapter rule found for 1.0 Pro.
    "gemini-1.0-pro-002": TunableModel(
        adapters(1, 2, 4, 8, 16, 32), preference=False, continuous=False
    ),
    "translation-llm-002": TunableModel(adapters(4), preference=False, continuous=False),
}
