"""Short human-readable reasons, one per recommended item, from its source."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo


def reason(source: str, seed: Any = None, **facts: Any) -> str:
    """Return the reason shown for an item recommended by `source` (seed: the item it came from)."""
    if source == "personal":
        return "picked for you from what shoppers like you buy"
    if source == "neighbours":
        return (
            f"because you were interested in {seed}"
            if seed is not None
            else "similar to your interests"
        )
    if source == "repurchase":
        cycle, since = facts.get("cycle_days"), facts.get("days_since")
        if cycle is not None and since is not None:
            return f"bought every ~{cycle:.0f} days, last {since:.0f} days ago"
        return "time to buy it again"
    if source == "complementary":
        return (
            f"goes with {seed}, which you bought"
            if seed is not None
            else "goes with your purchases"
        )
    if source == "session":
        return f"because you viewed {seed} just now" if seed is not None else "based on this visit"
    if source == "reminder":
        kind, day = facts.get("kind"), facts.get("day")
        if day is None:
            return "still thinking about it?"
        if kind == "cart":
            return f"in your cart since {day}"
        if kind == "favourite":
            return f"you saved it {_on(day)}"
        return f"you looked at it {_on(day)}: still thinking about it?"
    if source == "category_reach":
        category = facts.get("category")
        if category is None:
            return "popular in what you are browsing"
        return f"popular in category {category}, which you are browsing"
    if source == "baskets":
        if seed is not None:
            return "you buy it, and so do shoppers whose baskets look like yours"
        return "often in the baskets of shoppers who buy like you"
    if source == "segment_popular":
        return f"popular with customers like you ({facts.get('segment')})"
    if source == "favourite_category":
        return f"popular in {facts.get('category')}, one of your favourite categories"
    if source == "category_popular":
        return f"popular in category {facts.get('category')}"
    if source == "new_item":
        category = facts.get("category")
        return f"new arrival in category {category}" if category is not None else "new arrival"
    if source == "trending":
        return "trending now"
    if source == "popular":
        return "popular in the shop"
    if source == "similar":
        return f"often viewed with {seed}"
    if source == "content":
        return f"similar to {seed} (same category or brand)"
    if source == "complements":
        return f"frequently bought with {seed}"
    return source


def day_words(when: int, now: int, timezone: str) -> str:
    """A past moment as a shopper says it: 'earlier today', 'yesterday', 'Tuesday', '25 Nov'."""
    zone = ZoneInfo(timezone)
    then = datetime.fromtimestamp(when, zone).date()
    today = datetime.fromtimestamp(now, zone).date()
    days = (today - then).days
    if days <= 0:
        return "earlier today"
    if days == 1:
        return "yesterday"
    if days < 7:
        return then.strftime("%A")
    return f"{then.day} {then.strftime('%b')}"


def _on(day: str) -> str:
    """'on Tuesday' but 'yesterday', 'earlier today'."""
    return day if day in ("yesterday", "earlier today") else f"on {day}"
