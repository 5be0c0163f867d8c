"""Choosing what ships: the paired latency ratio, the objective, an explicit request, batch sizes. Pure."""

from __future__ import annotations

import random

import pytest

from modeldeploy.optimizer.outcome import CandidateOutcome, Timing
from modeldeploy.optimizer.selection import (
    Ratio,
    batch_sizes_to_measure,
    choose,
    choose_by_objective,
    paired_ratio,
    preferred_batch_sizes,
)


def _candidate(name: str, p50: float, size: int, status: str = "kept") -> CandidateOutcome:
    timing = Timing(p50, p50 * 1.5, 1000 / p50, 1, 10)
    return CandidateOutcome(name, status, "", size_bytes=size, timing=timing)  # type: ignore[arg-type]


def _timing(rounds: list[float]) -> Timing:
    ordered = sorted(rounds)
    return Timing(ordered[len(rounds) // 2], ordered[-1], 1000 / ordered[0], 1, len(rounds), tuple(rounds))


def _ratios(values: list[float]) -> Ratio:
    """The paired ratio of a candidate whose per-round ratio to a steady 10 ms reference is `values`."""
    shuffled = values[:]
    random.Random(0).shuffle(shuffled)
    return paired_ratio(_timing([10.0 * v for v in shuffled]), _timing([10.0] * len(values)))


# --- the paired ratio ------------------------------------------------------------------------------------


def test_without_paired_rounds_the_ratio_is_that_of_the_medians() -> None:
    half = paired_ratio(Timing(5.0, 6.0, 200.0, 1, 10), Timing(10.0, 12.0, 100.0, 1, 10))
    assert half == Ratio(0.5, 0.5, 0.5)
    # Rounds of another length are not paired either.
    unpaired = paired_ratio(_timing([4.0, 5.0, 6.0]), _timing([10.0, 10.0]))
    assert unpaired == Ratio(0.5, 0.5, 0.5)


@pytest.mark.parametrize(
    ("values", "median"),
    [([1.0, 2.0, 3.0, 4.0, 5.0], 3.0), ([1.0, 2.0, 3.0, 4.0], 2.5), ([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 3.5)],
)
def test_the_median_of_the_round_ratios(values: list[float], median: float) -> None:
    assert _ratios(values).median == pytest.approx(median)


@pytest.mark.parametrize("count", [1, 2, 3, 4])
def test_a_few_rounds_give_an_interval_over_all_of_them(count: int) -> None:
    values = [1.0 + i / 10 for i in range(count)]
    ratio = _ratios(values)
    assert ratio.low == pytest.approx(values[0])
    assert ratio.high == pytest.approx(values[-1])


def test_the_interval_spans_about_two_standard_errors_of_the_median_rank() -> None:
    # 100 rounds: the 95% interval of the median is the order statistics about 1.96 * sqrt(100) / 2 = 9.8
    # ranks either side of rank 50 (the textbook table: ranks 40 and 61).
    values = [1.0 + i / 1000 for i in range(100)]
    ratio = _ratios(values)
    assert values[39] <= ratio.low <= values[41]
    assert values[59] <= ratio.high <= values[61]
    assert ratio.median == pytest.approx((values[49] + values[50]) / 2)
    # 400 rounds: 19.6 ranks either side of rank 200.
    wide = _ratios([1.0 + i / 1000 for i in range(400)])
    assert 1.179 <= wide.low <= 1.181
    assert 1.219 <= wide.high <= 1.221


def test_the_ratio_is_rounded_for_the_report() -> None:
    assert Ratio(1.234567, 0.987654, 1.111111).to_json() == {"median": 1.2346, "low": 0.9877, "high": 1.1111}


# --- the objective ---------------------------------------------------------------------------------------


def test_the_fastest_wins_even_when_it_is_larger() -> None:
    candidates = [_candidate("original", 10.0, 100), _candidate("fp16", 4.0, 120)]
    choice = choose_by_objective(candidates)
    assert choice.winner.name == "fp16"
    assert choice.explanation == (
        "not measurably slower than the fastest (fp16, 4.000 ms; 95% interval of the paired latency ratio"
        " within 5%)"
    )


def test_exactly_five_percent_slower_is_still_as_fast() -> None:
    candidates = [_candidate("original", 10.0, 100), _candidate("int8", 10.5, 30)]
    assert choose_by_objective(candidates).winner.name == "int8"
    assert choose_by_objective(
        [_candidate("original", 10.0, 100), _candidate("int8", 10.6, 30)]
    ).winner.name == ("original")


def test_the_explanation_names_the_other_equally_fast_candidates() -> None:
    candidates = [
        _candidate("original", 10.0, 100),
        _candidate("fp16", 10.2, 50),
        _candidate("int8", 10.1, 60),
        _candidate("slow", 20.0, 1),
    ]
    choice = choose_by_objective(candidates)
    assert choice.winner.name == "fp16"
    assert choice.explanation == (
        "not measurably slower than the fastest (original, 10.000 ms; 95% interval of the paired latency"
        " ratio within 5%) and smallest among fp16, original, int8"
    )


def test_the_smallest_file_wins_whatever_the_sizes() -> None:
    candidates = [_candidate("original", 10.0, 1), _candidate("empty", 10.0, 0)]
    assert choose_by_objective(candidates).winner.name == "empty"


def test_as_fast_as_the_original_is_no_slower_than_it() -> None:
    original = _candidate("original", 10.0, 100)
    candidates = [original, _candidate("graph-optimized", 10.0, 50)]
    choice = choose_by_objective(candidates, baseline=original)
    assert choice.winner.name == "graph-optimized"
    # Nothing was left out for being slower than the original: the explanation does not say so.
    assert "no slower than the original" not in choice.explanation


def test_a_cap_by_the_original_keeps_the_whole_explanation() -> None:
    original = _candidate("original", 10.0, 100)
    candidates = [original, _candidate("fp16", 10.3, 50), _candidate("int8", 9.9, 80)]
    choice = choose_by_objective(candidates, baseline=original)
    assert choice.explanation == (
        "not measurably slower than the fastest (int8, 9.900 ms; 95% interval of the paired latency ratio"
        " within 5%), no slower than the original (10.000 ms) and smallest among int8, original"
    )


def test_nothing_kept_and_measured_is_an_error() -> None:
    unmeasured = CandidateOutcome("original", "kept", "", size_bytes=100)
    rejected = _candidate("int8", 1.0, 1, status="rejected")
    with pytest.raises(ValueError, match=r"^no kept and measured candidate to choose from"):
        choose_by_objective([unmeasured, rejected])


# --- an explicit request ---------------------------------------------------------------------------------


def test_a_request_that_passed_says_so() -> None:
    candidates = [_candidate("original", 5.0, 100), _candidate("int8-static", 6.0, 30)]
    choice = choose(candidates, "int8-static")
    assert choice.explanation == "requested 'int8-static' and it passed the accuracy gate"


def test_without_a_request_or_when_it_failed_the_original_still_caps_the_choice() -> None:
    original = _candidate("original", 10.0, 100)
    candidates = [
        original,
        _candidate("fp16", 10.3, 50),
        _candidate("int8", 9.9, 80),
        _candidate("int8-static", 1.0, 10, status="rejected"),
    ]
    assert choose(candidates, None, baseline=original) == choose_by_objective(candidates, baseline=original)
    assert choose(candidates, None, baseline=original).winner.name == "int8"
    assert choose(candidates, None).winner.name == "fp16"
    fallback = choose(candidates, "int8-static", baseline=original)
    assert fallback.winner.name == "int8"
    assert fallback.explanation.startswith(
        "requested 'int8-static' did not pass (see its reason); not measurably"
    )
    assert "no slower than the original" in fallback.explanation


# --- batch sizes -----------------------------------------------------------------------------------------


def test_equal_peaks_prefer_the_smaller_batch() -> None:
    assert preferred_batch_sizes({1: 100.0, 2: 100.0, 4: 100.0}) == [1]


def test_exactly_ninety_percent_of_the_peak_is_enough() -> None:
    assert preferred_batch_sizes({1: 50.0, 2: 90.0, 4: 100.0}) == [2, 4]


def test_a_model_that_does_not_batch_measures_no_batch_sizes() -> None:
    assert batch_sizes_to_measure(0) == []
    assert batch_sizes_to_measure(3) == [1, 2, 3]
    assert batch_sizes_to_measure(100, limit=48) == [1, 2, 4, 8, 16, 32, 48]
