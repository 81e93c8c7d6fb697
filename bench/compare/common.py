"""bench/compare/common.py: what the two comparisons share: loading the benches' own
drivers as modules, the metric record, and the after/before table.

A metric keeps one value per round for each build (and peer): its figure is the median
of the rounds, the ratio is after's figure over before's, and the spread is the range of
the per-round ratios (rounds are paired: both builds were measured in the same round, in
alternating order), which is what this machine's noise does to one round.
"""
import importlib.util
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.dirname(HERE)


def load(name, path):
    """Imports a bench driver (bench/pid1/bench.py, bench/request/bench.py) by path."""
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def pct(xs, p):
    xs = sorted(x for x in xs if x is not None)
    return xs[round((len(xs) - 1) * p)] if xs else None


def rotate(items, r):
    """The round's order: every build goes first in turn, so that neither is always
    measured right after the other (a warm cache, a burst of load from elsewhere)."""
    k = r % len(items) if items else 0
    return items[k:] + items[:k]


class Metric:
    """One row: a value per round per init. better is "lower" or "higher"."""

    def __init__(self, label, unit, better="lower", fmt="{:.2f}"):
        self.label, self.unit, self.better, self.fmt = label, unit, better, fmt
        self.values = {}  # init name -> [value of round 0, 1, ...] (None: not measured)
        self.note = ""

    def add(self, name, rnd, value):
        vs = self.values.setdefault(name, [])
        while len(vs) <= rnd:
            vs.append(None)
        vs[rnd] = value

    def figure(self, name):
        return med(self.values.get(name, []))

    def round_ratios(self, after="after", before="before"):
        a, b = self.values.get(after, []), self.values.get(before, [])
        return [x / y for x, y in zip(a, b) if x is not None and y]

    def n(self, name):
        return sum(1 for v in self.values.get(name, []) if v is not None)

    def show(self, v):
        return "-" if v is None else self.fmt.format(v)


def ratio_text(m):
    a, b = m.figure("after"), m.figure("before")
    if a is None or not b:
        return "-", "-"
    rr = m.round_ratios()
    spread = f"{min(rr):.2f}-{max(rr):.2f}" if len(rr) > 1 else "-"
    return f"**{a / b:.2f}x**", spread


def table(metrics, peers):
    """Markdown: metric | peers... | before | after | after/before | per-round ratios | n."""
    hdr = ["metric"] + list(peers) + ["before", "after", "after/before",
                                      "per-round after/before (min-max)",
                                      "rounds where after is worse"]
    out = ["| " + " | ".join(hdr) + " |", "|" + "---|" * len(hdr)]
    for m in metrics:
        ratio, spread = ratio_text(m)
        label = f"{m.label} ({m.unit}, {m.better} is better)" if m.unit else m.label
        row = [label] + [m.show(m.figure(p)) for p in peers]
        row += [m.show(m.figure("before")), m.show(m.figure("after")), ratio, spread,
                worse_rounds(m)]
        out.append("| " + " | ".join(row) + " |")
    return "\n".join(out)


def worse_rounds(m):
    """`k/n`: in how many paired rounds after did worse than before. A change that is
    real shows in (nearly) every round; noise splits them (with 5 rounds, all 5 one way
    happens by chance 1 time in 16, either way)."""
    rr = m.round_ratios()
    if not rr:
        return "-"
    k = sum(1 for r in rr if (r > 1.0 if m.better == "lower" else r < 1.0))
    return f"{k}/{len(rr)}"


def worst(metrics):
    """The metric whose ratio moved furthest from 1.0 the wrong way, and that ratio
    (for the summary line: a regression, or the noise floor when the code is the same)."""
    bad = None
    for m in metrics:
        a, b = m.figure("after"), m.figure("before")
        if a is None or not b:
            continue
        r = a / b if m.better == "lower" else b / a
        if bad is None or r > bad[1]:
            bad = (m.label, r)
    return bad


def spread(metrics):
    """How far the figures' ratios are from 1.0, either way: (median distance, largest
    distance, its metric, number of figures). With the same code before and after, this
    is the noise floor of one run."""
    ds = []
    for m in metrics:
        a, b = m.figure("after"), m.figure("before")
        if a is not None and b:
            ds.append((abs(a / b - 1.0), m.label))
    if not ds:
        return None
    top = max(ds)
    return med([d for d, _ in ds]), top[0], top[1], len(ds)
