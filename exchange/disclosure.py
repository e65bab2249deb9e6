"""Statistical disclosure control of the aggregates endpoint (spec §4.3, §4.4).

The offered queries are the total and one-way groupings (each a partition of the same
consenting persons). Publishing the total next to a grouping lets anyone subtract the
visible cells from it, so primary suppression alone (hide cells below the threshold `t`)
gives back a lone hidden cell. We use the standard remedy, secondary (complementary)
suppression, with a protection rule:

- primary: every cell with fewer than `t` persons is hidden;
- secondary: while the hidden cells of a grouping sum to less than `2t - 1`, the smallest
  published cell is hidden too;
- the total is published when it is at least `t` (it is the same in every query).

So the difference "total minus visible cells" is 0 or at least `2t - 1`, split over at
least two hidden cells; knowing the rule, one of them below `t` and the rest at least `t`,
an attacker is still left with every value from 1 to `t - 1` for a primary cell: no count
below the threshold can be worked out. Groupings are one-way, so two groupings constrain
each other only through the total, which both already publish.
"""


def hidden_cells(cells, threshold):
    """The groups to hide of `cells` ({group: count}, counts >= 1)."""
    hidden = {group for group, count in cells.items() if count < threshold}
    if not hidden:
        return hidden
    hidden_sum = sum(cells[group] for group in hidden)
    for group, count in sorted(((g, c) for g, c in cells.items() if g not in hidden), key=lambda gc: (gc[1], str(gc[0]))):
        if hidden_sum >= 2 * threshold - 1:
            break
        hidden.add(group)
        hidden_sum += count
    return hidden


def protect(cells, threshold):
    """[{group, count, suppressed}] in group order, with the hidden cells' counts withheld."""
    hidden = hidden_cells(cells, threshold)
    return [
        {"group": None if group is None else str(group), "count": None if group in hidden else count,
         "suppressed": group in hidden}
        for group, count in sorted(cells.items(), key=lambda gc: (gc[0] is None, str(gc[0])))
    ]
