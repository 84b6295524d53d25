"""The canonical schema: event types, canonical columns, and why a row is rejected."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class EventType(IntEnum):
    """Engine event types; the integer is the code stored in the canonical `event` column."""

    VIEW = 0
    CART = 1
    FAVOURITE = 2
    PURCHASE = 3
    RETURN = 4


EVENT_TYPES: tuple[str, ...] = tuple(t.name.lower() for t in EventType)

# Canonical columns of an accepted events frame, in order. `user`/`item` keep the shop's id type.
EVENT_COLUMNS: tuple[str, ...] = (
    "user",
    "item",
    "event",
    "timestamp",
    "quantity",
    "price",
    "session",
    "category",
)

# Fields of the item catalogue, beside the item id.
ITEM_FIELDS: frozenset[str] = frozenset({"category", "brand", "price", "available", "created"})


@dataclass(frozen=True)
class Reason:
    """Why a row was rejected; `fatal` reasons raise under the strict policy."""

    code: str
    what: str
    fatal: bool = True


# In priority order: a row breaking several rules is rejected for the first one listed.
# Quantities and prices above this are typos or overflow (1e40 items, a price of 1e400), not
# sales: set aside, never summed into a customer's monetary value.
MAX_AMOUNT = 1e9
REASONS: tuple[Reason, ...] = (
    Reason("missing_user", "empty user ids"),
    Reason("missing_item", "empty item ids"),
    Reason("bad_user_id", "user ids that are not whole numbers (the ids of this shop are)"),
    Reason("bad_item_id", "item ids that are not whole numbers (the ids of this shop are)"),
    Reason("bad_timestamp", "values that are not times"),
    Reason("timestamp_out_of_range", "times outside the plausible range"),
    Reason("out_of_window", "times outside the configured window", fatal=False),
    Reason("unknown_event", "event types not in events.event_types"),
    Reason("excluded_item", "items listed in events.exclude_items", fatal=False),
    Reason("skipped_by_rule", "rows matching events.skip_rules", fatal=False),
    Reason("bad_quantity", "quantities that are not numbers"),
    Reason("negative_quantity", "negative quantities that no return rule matched"),
    Reason("bad_price", "prices that are not numbers"),
    Reason("negative_price", "negative prices"),
    Reason("implausible_quantity", f"quantities that are infinite or above {MAX_AMOUNT:g}"),
    Reason("implausible_price", f"prices that are infinite or above {MAX_AMOUNT:g}"),
    Reason("zero_quantity", "purchases of quantity 0"),
    Reason("duplicate", "exact duplicates of an earlier row", fatal=False),
)
REASON_CODES: tuple[str, ...] = tuple(r.code for r in REASONS)
REASON_BY_CODE: dict[str, Reason] = {r.code: r for r in REASONS}
