"""The accuracy contract: sound statistics, one rule for every precision."""
import numpy as np
import pytest

from common.contract import CONTRACTS, contract_for, drop_bounds, judge, measure, min_images, wilson_lower


def test_wilson_bound_matches_known_values_and_tightens_with_more_images():
    assert wilson_lower(0, 10) == pytest.approx(0.0, abs=1e-12)
    assert wilson_lower(95, 100) == pytest.approx(0.9004, abs=2e-3)  # textbook one-sided 95% Wilson
    bounds = [wilson_lower(int(0.99 * n), n) for n in (100, 400, 1000, 10000)]
    assert bounds == sorted(bounds) and bounds[-1] > 0.985


def test_agreement_rule_is_sound_for_the_issue_cases():
    """99.2% true agreement passes on 1,000 images essentially always; 95% essentially never.
    (32/32 required, the old rule, rejected a 99.2% artifact about one time in four.)"""
    rng = np.random.default_rng(0)
    floor = contract_for("int8").min_agreement
    good = [wilson_lower(k, 1000) >= floor for k in rng.binomial(1000, 0.992, 2000)]
    bad = [wilson_lower(k, 1000) >= floor for k in rng.binomial(1000, 0.95, 2000)]
    assert np.mean(good) > 0.999 and np.mean(bad) < 0.001
    assert 1 - 0.992 ** 32 > 0.2  # the old rule's false rejection rate


def test_small_samples_cannot_pass_on_luck():
    n = min_images(0.97)
    assert 80 < n < 100
    assert wilson_lower(n - 1, n - 1) < 0.97 <= wilson_lower(n, n)


def _logits(n, classes=10, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    ref = rng.standard_normal((n, classes)) * 3
    return ref, ref + noise * rng.standard_normal((n, classes))


def test_distribution_statistic_does_not_get_stricter_with_more_images():
    """The 5th-percentile cosine of the same kind of error settles as n grows; the worst sample falls."""
    p5, worst = [], []
    for n in (100, 1000, 10000):
        ref, cand = _logits(n, noise=0.3, seed=n)
        f = measure(ref, cand, n)
        p5.append(f["cosine_p5"])
        worst.append(min(f["cosine_p5"], float(np.min((ref * cand).sum(1) / np.linalg.norm(ref, axis=1)
                                                      / np.linalg.norm(cand, axis=1)))))
    assert max(p5) - min(p5) < 0.01
    assert worst[-1] < worst[0]


def test_paired_drop_bounds_fail_only_a_drop_shown_to_exceed_the_budget():
    right = np.ones(1000, bool)
    lower, upper = drop_bounds(right, right)
    assert lower < 0 < upper < 0.3  # no discordant pair: near zero, from the continuity term
    cand = right.copy()
    cand[:20] = False  # 2 points lost
    lower, upper = drop_bounds(right, cand)
    assert 1.0 < lower < 2.0 < upper < 3.5
    small_ref, small_cand = np.ones(240, bool), np.ones(240, bool)
    small_cand[:3] = False  # 1.25 points lost on a small folder: not shown to exceed 1 point
    f = measure(np.eye(10)[np.zeros(240, int)], np.eye(10)[np.zeros(240, int)], 240)
    f.update(delta_top1_points=-1.25, drop_lower95_points=drop_bounds(small_ref, small_cand)[0])
    assert judge(contract_for("int8"), f) == []


def test_judge_int8_needs_real_images_and_ignores_noise_inputs():
    ref, cand = _logits(50, noise=5.0)
    figures = measure(ref, cand, n_real=0)
    assert any("real images" in m for m in judge(contract_for("int8"), figures))
    ref_real, cand_real = _logits(1000, noise=0.01, seed=1)
    f = measure(np.concatenate([ref_real, ref]), np.concatenate([cand_real, cand]), n_real=1000)
    assert judge(contract_for("int8"), f) == []  # the bad noise rows are not judged for int8
    assert judge(contract_for("fp16"), f)  # but fp16's numerical check includes them


def test_random_weights_are_judged_by_numerics_only():
    ref, cand = _logits(1000, noise=0.05)
    ref[:, 0] = ref[:, 1] = 0  # near-ties everywhere: decisions flip, the numbers are fine
    cand = ref + 0.02 * np.random.default_rng(2).standard_normal(ref.shape)
    figures = measure(ref, cand, 1000)
    assert judge(contract_for("int8"), figures, random_weights=True) == []


def test_every_precision_has_a_contract():
    for kind in ("fp32", "fp16", "int8", "linear8", "palettize6", "palettize4"):
        assert contract_for(kind) is CONTRACTS[kind]
    with pytest.raises(KeyError):
        contract_for("int3")
