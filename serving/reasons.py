"""Short human-readable reasons, one per recommended item, from its source."""

from __future__ import annotations

from typing import Any


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
