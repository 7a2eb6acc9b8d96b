"""RLM license sharing: handles of one product that share a license (`share: u`, `h` or `uh`) hold it once.

rlmstat lists every handle, one usage line each, but counts a shared license once in the pool's `inuse`, and a
license with `max_share: N` once per N handles. rlmstat does not print a pool's sharing, so it is read from the
counts: the first way of sharing (user and host, user, host; each unlimited, then each limit) by which the handles
add up to `inuse` is the server's.
"""

from __future__ import annotations

from collections.abc import Sequence

from dash_app.sources.status import Checkout

# The Checkout fields that make handles share a license: user and host ("uh"), user ("u"), host ("h").
_SHARING = ((1, 2), (1,), (2,))


def shared(uses: Sequence[Checkout], in_use: int) -> list[Checkout]:
    """Return one product's checkouts with each group of handles sharing a license as one, when that is how they add up."""
    for fields in _SHARING:
        groups: dict[tuple[object, ...], list[Checkout]] = {}
        for checkout in uses:
            groups.setdefault((checkout.version, *(checkout[i] for i in fields)), []).append(checkout)
        if len(groups) == len(uses):
            continue  # nothing would share this way
        biggest = max(len(group) for group in groups.values())
        for max_share in (0, *range(2, biggest)):  # 0: no limit
            merged = [_one(group, max_share) for group in groups.values()]
            if sum(checkout.licenses for checkout in merged) == in_use:
                return merged
    return list(uses)  # no sharing adds up: left as listed (the section is then not whole)


def _one(group: list[Checkout], max_share: int) -> Checkout:
    """Return a group of handles sharing licenses as one checkout: its first start, and one license per `max_share`."""
    if len(group) == 1:
        return group[0]
    first = min(group, key=lambda checkout: checkout.started_at or 0.0)
    times = 1 if max_share == 0 else -(-len(group) // max_share)
    # No handle: the group is known from one poll to the next by who shares it and its first start.
    return first._replace(handle=None, licenses=max(checkout.licenses for checkout in group) * times)
