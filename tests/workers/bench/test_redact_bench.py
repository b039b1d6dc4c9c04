"""``distillery bench redact``: both ways over the same events, the redactions counted."""

from __future__ import annotations

from workers.bench.redact import run_redact_bench


def test_the_redaction_bench_measures_both_ways_and_finds_what_it_planted() -> None:
    figures = run_redact_bench(n=300, pii_share=0.5, repeats=1)
    assert figures["decode_items_per_s"] > 0 and figures["decode_redact_items_per_s"] > 0
    assert figures["ratio"] == (figures["decode_redact_items_per_s"]
                                / figures["decode_items_per_s"])
    # each planted sentence has an e-mail, a phone and a card; some tickets have an e-mail
    planted = figures["redactions"]
    assert 3 * 100 <= planted <= 3 * 300
