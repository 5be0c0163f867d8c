"""The accuracy gate's figures, bounds and report, exactly as docs/optimizer.md defines them. Pure numpy."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from modeldeploy.optimizer.accuracy import (
    FLOAT_TOLERANCE,
    WORST_CASE_FACTOR,
    AccuracyReport,
    OutputAccuracy,
    compare,
    cosine_similarity,
)


def _output(**fields: Any) -> OutputAccuracy:
    values: dict[str, Any] = {
        "name": "y",
        "cosine": 1.0,
        "min_cosine": 1.0,
        "max_abs_error": 0.0,
        "top1_agreement": None,
    }
    return OutputAccuracy(**{**values, **fields})


def _report(*outputs: OutputAccuracy, batch: AccuracyReport | None = None) -> AccuracyReport:
    return AccuracyReport(outputs=outputs, samples=4, batch=batch, batch_size=8 if batch else 1)


# --- cosine and relative error ---------------------------------------------------------------------------


def test_cosine_is_the_angle_whatever_the_norms() -> None:
    assert cosine_similarity(np.array([3.0, 0.0]), np.array([-3.0, 4.0])) == pytest.approx(-0.6)
    assert cosine_similarity(np.array([3.0, 0.0]), np.array([3.0, 4.0])) == pytest.approx(0.6)
    assert cosine_similarity(np.array([0.5, 0.0]), np.array([0.0, 2.0])) == pytest.approx(0.0)
    # Unit vectors are no special case; a zero candidate against a non-zero original is no agreement.
    assert cosine_similarity(np.array([1.0, 0.0]), np.array([1.0, 0.0])) == 1.0
    assert cosine_similarity(np.array([1.0, 2.0]), np.zeros(2)) == 0.0
    assert cosine_similarity(np.array([1.0, 2.0]), np.array([0.0, 1.0])) == pytest.approx(2 / np.sqrt(5))


def test_cosine_stays_within_minus_one_and_one_despite_rounding() -> None:
    # In float64, dot(a, a) / |a|^2 lands one ulp beyond 1 for about a quarter of random vectors.
    rng = np.random.default_rng(1)
    for _ in range(40):
        a = rng.normal(size=7)
        same, opposite = cosine_similarity(a, a), cosine_similarity(a, -a)
        assert 1.0 - 1e-15 < same <= 1.0
        assert -1.0 <= opposite < -1.0 + 1e-15


def test_relative_error_is_the_difference_over_the_originals_norm() -> None:
    reference = [[np.array([3.0, 4.0])], [np.array([0.0, 10.0])]]
    candidate = [
        [np.array([3.0, 4.0]) * 1.5],
        [np.array([0.0, 10.0])],
    ]  # +50% on one sample, exact on the other
    output = compare(["y"], reference, candidate).outputs[0]
    assert output.cosine == pytest.approx(1.0)
    assert output.max_relative_error == pytest.approx(0.5)
    assert output.relative_error == pytest.approx(np.sqrt((0.5**2 + 0.0) / 2))  # root mean square
    assert output.drop == pytest.approx(output.relative_error**2 / 2)
    assert output.worst_drop == pytest.approx(0.5**2 / 2)


def test_an_all_zero_sample_is_judged_against_the_typical_norm_however_small() -> None:
    # Outputs of norm 0.5 (well below 1): the blank sample's candidate is 0.05 off, a tenth of the usual norm.
    reference = [[np.array([0.3, 0.4])], [np.array([0.0, 0.5])], [np.zeros(2)]]
    candidate = [[np.array([0.3, 0.4])], [np.array([0.0, 0.5])], [np.array([0.05, 0.0])]]
    output = compare(["map"], reference, candidate).outputs[0]
    assert output.min_cosine == pytest.approx(0.9)
    assert output.max_relative_error == pytest.approx(0.1)
    # Large outputs likewise: norm 50, the blank sample's candidate 5 off.
    big = compare(["map"], [[r[0] * 100] for r in reference], [[c[0] * 100] for c in candidate]).outputs[0]
    assert big.min_cosine == pytest.approx(0.9)
    assert big.max_relative_error == pytest.approx(0.1)


def test_an_output_that_is_zero_on_every_sample_agrees_only_with_zeros() -> None:
    blank = [[np.zeros(3)], [np.zeros(3)]]
    same = compare(["map"], blank, blank).outputs[0]
    assert (same.cosine, same.min_cosine, same.relative_error, same.max_relative_error) == (
        1.0,
        1.0,
        0.0,
        0.0,
    )
    noisy = compare(["map"], blank, [[np.zeros(3)], [np.full(3, 1e-6)]]).outputs[0]
    assert (noisy.min_cosine, noisy.max_relative_error) == (0.0, 1.0)


def test_float16_and_integer_outputs_are_compared_in_float64() -> None:
    reference = [[np.array([[1, 2, 3]], dtype=np.int32)]]
    candidate = [[np.array([[1, 2, 4]], dtype=np.float16)]]
    output = compare(["y"], reference, candidate).outputs[0]
    assert output.max_abs_error == 1.0
    assert output.max_relative_error == pytest.approx(1 / np.sqrt(14))


# --- top-1 agreement -------------------------------------------------------------------------------------


def test_top1_compares_each_rows_argmax_with_the_originals_own_row() -> None:
    reference = np.array([[[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]])
    candidate = reference.copy()
    candidate[0, 2] = [0.0, 1.0, 0.0]  # one time step of four flips
    report = compare(["seq"], [[reference]], [[candidate]], frozenset({"seq"}))
    assert report.worst_top1 == pytest.approx(0.75)


def test_top1_of_an_unbatched_score_vector_and_of_two_classes() -> None:
    # One score vector per sample, without a batch axis.
    reference = [[np.array([0.1, 0.9])], [np.array([0.8, 0.2])]]
    candidate = [[np.array([0.1, 0.9])], [np.array([0.2, 0.8])]]
    report = compare(["p"], reference, candidate, frozenset({"p"}))
    assert report.worst_top1 == 0.5
    assert report.drop == pytest.approx(0.5)


def test_a_single_score_has_no_top1() -> None:
    reference = [[np.array([[0.3]])], [np.array([[0.9]])]]
    candidate = [[np.array([[0.1]])], [np.array([[0.9]])]]
    assert compare(["p"], reference, candidate, frozenset({"p"})).outputs[0].top1_agreement is None


def test_scalar_outputs_are_compared_without_top1() -> None:
    reference = [[np.array(2.0)], [np.array(3.0)]]
    candidate = [[np.array(2.0)], [np.array(3.3)]]
    output = compare(["score"], reference, candidate).outputs[0]
    assert output.top1_agreement is None
    assert output.max_relative_error == pytest.approx(0.1)


# --- broken outputs --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("candidate", "problem"),
    [
        (np.array([[np.inf, 1.0]]), "non-finite values (nan/inf)"),
        (np.array([[1.0, 2.0, 3.0]]), "shape (1, 3) differs from (1, 2)"),
    ],
)
def test_a_broken_output_reports_its_problem_and_scores_nothing(candidate: Any, problem: str) -> None:
    report = compare(["y", "z"], [[np.array([[1.0, 2.0]]), np.ones(2)]], [[candidate, np.ones(2)]])
    assert [o.name for o in report.outputs] == ["y", "z"]
    broken = report.to_json()["outputs"]["y"]  # type: ignore[index]
    assert broken == {
        "cosine": 0.0,
        "min_cosine": 0.0,
        "relative_error": 0.0,
        "max_relative_error": 0.0,
        "max_abs_error": float("inf"),
        "top1_agreement": None,
        "drop": 1.0,
        "worst_drop": 1.0,
        "problem": problem,
    }
    assert report.failure(0.5) == "accuracy drop 1 exceeds 0.5"


def test_sample_counts_must_match() -> None:
    with pytest.raises(ValueError, match=r"^3 reference samples but 2 candidate samples$"):
        compare(["y"], [[np.ones(2)]] * 3, [[np.ones(2)]] * 2)


def test_no_samples_means_no_drop() -> None:
    output = compare(["y"], [], []).outputs[0]
    assert (output.cosine, output.min_cosine, output.relative_error, output.max_relative_error) == (
        1.0,
        1.0,
        0.0,
        0.0,
    )
    assert output.drop == 0.0


# --- drops and bounds ------------------------------------------------------------------------------------


def test_the_drop_is_the_worst_of_cosine_scale_and_top1() -> None:
    assert _output(cosine=0.97).drop == pytest.approx(0.03)
    assert _output(cosine=0.99, relative_error=0.3).drop == pytest.approx(0.045)
    assert _output(cosine=0.99, relative_error=0.1, top1_agreement=0.9).drop == pytest.approx(0.1)
    assert _output(cosine=1.0 + 1e-15).drop == 0.0  # never negative
    assert _output(min_cosine=0.9, max_relative_error=0.2).worst_drop == pytest.approx(0.1)
    assert _output(min_cosine=0.99, max_relative_error=0.6).worst_drop == pytest.approx(0.18)
    assert _output(min_cosine=1.0 + 1e-15).worst_drop == 0.0
    assert _output(cosine=1.0, problem="x").worst_drop == 1.0


def test_the_report_takes_the_worst_output() -> None:
    report = _report(
        _output(name="a", cosine=0.98, min_cosine=0.95, top1_agreement=0.9),
        _output(name="b", cosine=0.99, min_cosine=0.9, relative_error=0.2, top1_agreement=0.8),
    )
    assert report.drop == pytest.approx(0.2)
    assert report.worst_drop == pytest.approx(0.1)
    assert report.worst_cosine == 0.98
    assert report.min_cosine == 0.9
    assert report.worst_top1 == 0.8
    empty = _report()
    assert (empty.drop, empty.worst_drop, empty.worst_cosine, empty.min_cosine, empty.worst_top1) == (
        0.0,
        0.0,
        1.0,
        1.0,
        None,
    )


def test_a_drop_exactly_at_the_bound_passes() -> None:
    # drop = 1 - top1 is exact here (Sterbenz): the drop equals the bound plus the rounding tolerance.
    at_bound = _report(_output(top1_agreement=1.0 - (0.5 + FLOAT_TOLERANCE)))
    assert at_bound.drop == 0.5 + FLOAT_TOLERANCE
    assert at_bound.passes(0.5)
    assert at_bound.failure(0.5) == ""
    assert not at_bound.passes(0.49)
    worst_at_bound = _report(_output(min_cosine=1.0 - (WORST_CASE_FACTOR * 0.25 + FLOAT_TOLERANCE)))
    assert worst_at_bound.worst_drop == WORST_CASE_FACTOR * 0.25 + FLOAT_TOLERANCE
    assert worst_at_bound.passes(0.25)
    assert worst_at_bound.failure(0.25) == ""
    assert not worst_at_bound.passes(0.24)


def test_each_failed_bound_is_named_with_its_figures() -> None:
    assert _report(_output(cosine=0.9)).failure(0.05) == "accuracy drop 0.1 exceeds 0.05"
    worst = _report(_output(cosine=0.99, min_cosine=0.85))
    assert worst.passes(0.05) is False
    assert worst.failure(0.05) == "worst-case drop 0.15 exceeds 2 x 0.05"
    assert worst.failure(0.1) == ""


def test_the_batched_comparison_must_pass_too() -> None:
    bad_batch = _report(_output(cosine=0.9))
    report = _report(_output(cosine=0.99), batch=bad_batch)
    assert not report.passes(0.05)
    assert report.failure(0.05) == "at batch 8: accuracy drop 0.1 exceeds 0.05"
    good_batch = _report(_output(cosine=0.98))
    passing = _report(_output(cosine=0.99), batch=good_batch)
    assert passing.passes(0.05)
    assert passing.failure(0.05) == ""


# --- the report ------------------------------------------------------------------------------------------


def test_the_output_figures_are_rounded_for_the_report() -> None:
    output = _output(
        name="scores",
        cosine=0.123456789,
        min_cosine=0.0123456789,
        max_abs_error=0.000123456789,
        top1_agreement=0.987654321,
        relative_error=0.111111111,
        max_relative_error=0.222222222,
    )
    assert output.to_json() == {
        "cosine": 0.123457,
        "min_cosine": 0.012346,
        "relative_error": 0.111111,
        "max_relative_error": 0.222222,
        "max_abs_error": 0.000123457,
        "top1_agreement": 0.987654,
        "drop": 0.876543,
        "worst_drop": 0.987654,
    }
    assert _output(top1_agreement=None).to_json()["top1_agreement"] is None


def test_the_report_summarises_the_worst_figures_and_the_batch() -> None:
    a = _output(name="a", cosine=0.9876543, min_cosine=0.95, top1_agreement=0.9876543, relative_error=0.1)
    b = _output(name="b", cosine=0.9999999, min_cosine=0.9123456, relative_error=0.31234567)
    batch = _report(_output(cosine=0.97123456, min_cosine=0.93123456))
    document = _report(a, b, batch=batch).to_json()
    assert document == {
        "drop": 0.04878,  # b: 0.31234567^2 / 2 = 0.0487799...
        "worst_drop": 0.087654,  # b: 1 - 0.9123456
        "cosine": 0.987654,
        "min_cosine": 0.912346,
        "relative_error": 0.312346,
        "top1_agreement": 0.987654,
        "samples": 4,
        "outputs": {"a": a.to_json(), "b": b.to_json()},
        "batch": {"batch_size": 8, "drop": 0.028765, "worst_drop": 0.068765},
    }
    alone = _report(_output(cosine=0.5)).to_json()
    assert alone["batch"] is None
    assert alone["top1_agreement"] is None
    assert _report().to_json()["relative_error"] == 0.0


def test_compare_counts_the_samples() -> None:
    samples = [[np.ones(2)] for _ in range(5)]
    assert compare(["y"], samples, samples).to_json()["samples"] == 5
