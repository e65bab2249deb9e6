"""Statistical disclosure control of the aggregates endpoint (spec §4.3, §4.4).

The offered queries are the total and one-way groupings (each a partition of the same
consenting persons). Publishing the total next to a grouping lets anyone subtract the
visible cells from it, so primary suppression alone (hide cells below the threshold `t`)
gives back a lone hidden cell. We use the standard remedy, secondary (complementary)
suppression, with a protection rule:

- primary: every cell with fewer than `t` persons is hidden;
- secondary: while the hidden cells of a grouping sum to less than `2t - 1`, one more cell is
  hidden, taken in an order that depends on the group's name and a secret key only, never on
  its count (choosing, say, the smallest cell would tell that it is no larger than any shown);
- the total is published when it is at least `t` (it is the same in every query).

So the difference "total minus visible cells" is 0, or at least `2t - 1` and at least `t - 1`
more than the number of hidden cells, and which of them were hidden for their own size cannot
be told. A grouping that cannot be hidden so (too few persons outside its small cells), or
whose total is below `t`, is withheld whole, its groups' names included: naming a group says
it holds at least one person. No count below the threshold can be worked out
(tests/test_policy_properties.py lets an attacker who knows the rule, but not the key,
enumerate every consistent world). Groupings are one-way, so two groupings constrain
each other only through the total, which both already publish. (A threshold below 3 cannot
protect anything: a hidden cell's group is named, so it holds at least 1, and with `t = 2`
the only count below the threshold is 1.)
"""
import hashlib
import hmac

from django.conf import settings


def _keyed_order(group):
    return hmac.new(settings.SCP_PSEUDONYM_KEY.encode(), f"cell:{group}".encode(), hashlib.sha256).digest()


def _protected(hidden_sum, hidden_count, threshold):
    # At least 2t - 1 hidden, and enough above one person per hidden cell that any of them
    # could hold anything from 1 to t - 1.
    return hidden_sum >= max(2 * threshold - 1, hidden_count + threshold - 1)


def hidden_cells(cells, threshold, order=_keyed_order):
    """The groups to hide of `cells` ({group: count}, counts >= 1), or None when the
    grouping cannot be protected at all (then no cell, not even its group, is shown)."""
    hidden = {group for group, count in cells.items() if count < threshold}
    if not hidden:
        return hidden
    hidden_sum = sum(cells[group] for group in hidden)
    for group in sorted((g for g in cells if g not in hidden), key=order):
        if _protected(hidden_sum, len(hidden), threshold):
            break
        hidden.add(group)
        hidden_sum += cells[group]
    return hidden if _protected(hidden_sum, len(hidden), threshold) else None


def protect(cells, threshold, order=_keyed_order):
    """[{group, count, suppressed}] in group order, the hidden cells' counts withheld; an
    empty list when the grouping cannot be shown at all (its total below the threshold, or
    too few persons outside the small cells to hide them among)."""
    hidden = hidden_cells(cells, threshold, order) if sum(cells.values()) >= threshold else None
    if hidden is None:
        return []
    return [
        {"group": None if group is None else str(group), "count": None if group in hidden else count,
         "suppressed": group in hidden}
        for group, count in sorted(cells.items(), key=lambda gc: (gc[0] is None, str(gc[0])))
    ]
