"""estimators.py: the item-level estimators against statsmodels / scipy and hand computations
(HC2 variance, Kish's effective size − 1 degrees of freedom), every "not estimable" edge, and
small seeded Monte Carlo checks of the Σ/Σ ratio interval's coverage and the paired test's size."""

from __future__ import annotations

import math

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import stats

from hand_stats import hc2_se, kish_df, paired_ratio_by_hand
from llm_energy.analysis.estimators import (
    MIN_ITEMS,
    Estimate,
    PairedRatio,
    mean_estimate,
    median_estimate,
    not_estimable,
    paired_ratio,
    ratio_estimate,
    widen,
    with_extra_se,
)
from llm_energy.analysis.selection import upper_bound

LEVEL = 0.95


def _items(seed: int, n: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """n items: natural-length token counts and energy ≈ 0.5 J/token with 10 % item noise."""
    rng = np.random.default_rng(seed)
    den = np.round(rng.lognormal(np.log(40.0), 0.4, n))
    num = 0.5 * den * rng.lognormal(0.0, 0.1, n)
    return num, den


def _wls_fit(num: np.ndarray, den: np.ndarray, cov_type: str = "HC2"):
    """WLS of numerator on denominator, no constant, weights 1/den, robust covariance, t-based."""
    return sm.WLS(num, den, weights=1.0 / den).fit(cov_type=cov_type, use_t=True)


def _assert_not_estimable(est: Estimate, why: str) -> None:
    assert not est.estimable
    assert est.note.startswith("not estimable: ") and why in est.note
    assert math.isnan(est.ci_low) and math.isnan(est.ci_high)


# --- ratio_estimate: parity with statsmodels' HC2 WLS ---------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ratio_estimate_log_scale_matches_statsmodels_hc2(seed: int) -> None:
    num, den = _items(seed)
    est = ratio_estimate(num, den, level=LEVEL)
    fit = _wls_fit(num, den)
    assert est.log_scale and est.estimable and est.note == ""
    # the WLS slope with weights 1/den is Σ num / Σ den
    assert est.value == pytest.approx(float(fit.params[0]), rel=1e-12)
    assert est.value == pytest.approx(num.sum() / den.sum(), rel=1e-12)
    # the delta-method SE on the log scale, back on the ratio's scale, is the HC2 SE …
    assert est.se * est.value == pytest.approx(float(fit.bse[0]), rel=1e-10)
    # … by hand: influence (num − R·den) / (mean(den)·R), leverage den / Σ den
    r = num.sum() / den.sum()
    u = (num - r * den) / den.mean() / r
    assert est.se == pytest.approx(hc2_se(u, den / den.sum()), rel=1e-12)
    # … and not HC1 (= sd(u) / √n), which the natural lengths make differ
    assert float(_wls_fit(num, den, "HC1").bse[0]) == pytest.approx(u.std(ddof=1) / 8**0.5 * r)
    assert est.se != pytest.approx(u.std(ddof=1) / math.sqrt(len(u)), rel=1e-3)
    # degrees of freedom: Kish's effective number of items (numerator shares) minus one, not
    # statsmodels' n − 1
    df = kish_df(num)
    assert est.df == pytest.approx(df, rel=1e-12)
    assert 1 <= est.df < fit.df_resid == len(num) - 1
    # the interval is the t interval on the log scale (bounds stay positive)
    half = stats.t.ppf(0.975, df) * est.se
    assert est.ci_low == pytest.approx(est.value * math.exp(-half), rel=1e-12)
    assert est.ci_high == pytest.approx(est.value * math.exp(half), rel=1e-12)
    assert 0 < est.ci_low < est.value < est.ci_high
    # and is not the symmetric linear interval with the same SE and df: both bounds are higher
    lin_half = stats.t.ppf(0.975, df) * float(fit.bse[0])
    assert est.ci_low > est.value - lin_half and est.ci_high > est.value + lin_half


def test_ratio_estimate_linear_scale_matches_statsmodels_hc2() -> None:
    # a non-positive numerator (dynamic energy can dip below the idle baseline) forces the
    # linear scale, where the SE is statsmodels' HC2 SE itself and the df are Kish's effective
    # number of items by their denominators, minus one
    num, den = _items(3)
    num[0] = -2.0
    est = ratio_estimate(num, den, level=LEVEL)
    fit = _wls_fit(num, den)
    assert not est.log_scale and est.estimable
    assert est.value == pytest.approx(float(fit.params[0]), rel=1e-12)
    assert est.se == pytest.approx(float(fit.bse[0]), rel=1e-10)
    r = num.sum() / den.sum()
    assert est.se == pytest.approx(hc2_se((num - r * den) / den.mean(), den / den.sum()))
    df = kish_df(den)
    assert est.df == pytest.approx(df, rel=1e-12) and est.df < len(num) - 1
    half = stats.t.ppf(0.975, df) * float(fit.bse[0])
    assert (est.ci_low, est.ci_high) == (
        pytest.approx(est.value - half, rel=1e-10),
        pytest.approx(est.value + half, rel=1e-10),
    )


def test_equal_denominators_give_the_textbook_t_interval() -> None:
    # equal sizes: every leverage is 1/n, so HC2 is the textbook sd / √n, and on the linear
    # scale every item weighs the same (w = den), so df = n − 1: scipy's one-sample t interval
    values = np.array([1.2, -0.4, 0.3, 2.5, 1.1, 0.9])
    est = ratio_estimate(3.0 * values, np.full(6, 3.0), level=LEVEL)
    ref = stats.ttest_1samp(values, 0.0)
    ci = ref.confidence_interval(confidence_level=LEVEL)
    assert not est.log_scale and est.df == ref.df == 5
    assert est.value == pytest.approx(values.mean())
    assert est.se == pytest.approx(stats.sem(values), rel=1e-12)
    assert (est.ci_low, est.ci_high) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert est.t_stat() == pytest.approx(ref.statistic, rel=1e-12)
    # on the log scale the SE is still the textbook one, sd(v / mean) / √n, but the df are
    # Kish's by the numerators: n − 1 only when the items are equal, below it otherwise
    pos = np.array([1.2, 0.8, 1.1, 1.5, 0.9, 1.0])
    log_est = ratio_estimate(pos, np.ones(6), level=LEVEL)
    assert log_est.log_scale
    assert log_est.se == pytest.approx((pos / pos.mean()).std(ddof=1) / math.sqrt(6))
    assert log_est.df == pytest.approx(kish_df(pos)) and 4.5 < log_est.df < 5


def test_ratio_estimate_is_sum_over_sum_not_a_mean_of_ratios() -> None:
    num = np.array([2.0, 3.0, 10.0, 4.0])
    den = np.array([1.0, 6.0, 20.0, 4.0])
    est = ratio_estimate(num, den, level=LEVEL)
    assert est.value == pytest.approx(19.0 / 31.0)
    assert est.value != pytest.approx(np.mean(num / den))
    assert est.n == 4


def test_ratio_estimate_leaves_out_zero_token_and_non_finite_items() -> None:
    num = np.array([2.0, 3.0, 5.0, 4.0, np.nan, 7.0])
    den = np.array([4.0, 5.0, 0.0, 9.0, 3.0, np.inf])
    est = ratio_estimate(num, den, level=LEVEL)
    ref = ratio_estimate(num[[0, 1, 3]], den[[0, 1, 3]], level=LEVEL)
    assert est == ref
    assert est.n == 3 and est.value == pytest.approx(9.0 / 18.0)


# --- mean_estimate: the one-sample t interval ----------------------------------------------------


def test_mean_estimate_linear_scale_is_the_one_sample_t_interval() -> None:
    values = np.array([1.2, 0.4, -0.3, 2.5, 1.1, 0.9, 1.7])  # one negative: linear scale
    est = mean_estimate(values, level=LEVEL)
    ci = stats.ttest_1samp(values, 0.0).confidence_interval(confidence_level=LEVEL)
    assert not est.log_scale
    assert est.value == pytest.approx(values.mean())
    assert est.se == pytest.approx(stats.sem(values))
    assert est.ci_low == pytest.approx(ci.low, rel=1e-12)
    assert est.ci_high == pytest.approx(ci.high, rel=1e-12)
    assert est.df == len(values) - 1


def test_mean_estimate_positive_values_use_the_log_scale() -> None:
    values = np.array([1.2, 0.8, 1.1, 1.5, 0.9])
    est = mean_estimate(values, level=0.9)
    m = values.mean()
    se_log = values.std(ddof=1) / m / math.sqrt(len(values))  # delta method: sd(v / m) / √n
    # Kish's effective number of items by their values: (Σv)² / Σv² = 30.25 / 6.35 = 4.76
    df = values.sum() ** 2 / (values**2).sum() - 1
    assert df == pytest.approx(30.25 / 6.35 - 1)
    half = stats.t.ppf(0.95, df) * se_log
    assert est.log_scale and est.level == 0.9
    assert est.se == pytest.approx(se_log)
    assert est.df == pytest.approx(df)
    assert (est.ci_low, est.ci_high) == (
        pytest.approx(m * math.exp(-half)),
        pytest.approx(m * math.exp(half)),
    )


# --- paired_ratio: a paired t test on the linearised item values --------------------------------


def _pseudo_values(num_a, den_a, num_b, den_b) -> np.ndarray:
    """log(R_a / R_b) + u_a − u_b with u = (num − R·den) / (mean(den) · R): the item values
    whose t test the paired ratio is (mean(u_a − u_b) = 0 exactly)."""
    ra, rb = num_a.sum() / den_a.sum(), num_b.sum() / den_b.sum()
    ua = (num_a - ra * den_a) / den_a.mean() / ra
    ub = (num_b - rb * den_b) / den_b.mean() / rb
    return math.log(ra / rb) + ua - ub


@pytest.mark.parametrize("equal_den", [True, False])
def test_paired_ratio_is_a_t_test_on_pseudo_values_with_hc2_and_kish_df(equal_den: bool) -> None:
    rng = np.random.default_rng(5)
    n = 7
    den_a = np.ones(n) if equal_den else np.round(rng.lognormal(np.log(40.0), 0.4, n))
    den_b = np.ones(n) if equal_den else den_a * rng.uniform(0.9, 1.1, n)
    item = rng.lognormal(0.0, 0.3, n)  # item difficulty, shared by a and b: it cancels
    num_a = 0.45 * den_a * item * rng.lognormal(0.0, 0.05, n)
    num_b = 0.50 * den_b * item * rng.lognormal(0.0, 0.05, n)
    pr = paired_ratio(num_a, den_a, num_b, den_b, level=LEVEL)
    pseudo = _pseudo_values(num_a, den_a, num_b, den_b)
    ra_rb = (num_a.sum() / den_a.sum()) / (num_b.sum() / den_b.sum())
    assert pr.ratio.value == pytest.approx(ra_rb, rel=1e-12)
    assert pr.pct_change == pytest.approx(100 * (ra_rb - 1))
    assert pseudo.mean() == pytest.approx(math.log(ra_rb), rel=1e-12)
    ref = paired_ratio_by_hand(num_a, den_a, num_b, den_b)
    assert pr.ratio.se == pytest.approx(ref["se"], rel=1e-12)
    assert pr.ratio.df == pytest.approx(ref["df"], rel=1e-12)
    for key in ("t", "p_two_sided", "p_lower", "p_higher"):
        assert getattr(pr, key) == pytest.approx(ref[key], rel=1e-9), key
    assert pr.ratio.ci_low == pytest.approx(ref["ci_low"], rel=1e-9)
    assert pr.ratio.ci_high == pytest.approx(ref["ci_high"], rel=1e-9)
    assert 1 <= pr.ratio.df < n - 1  # the items' numerators differ: fewer effective items
    textbook = stats.ttest_1samp(pseudo, 0.0)
    if equal_den:
        # every leverage is 1/n: the SE is the textbook sd(pseudo) / √n, so the statistic is
        # scipy's one-sample t; only the df (and so p) differ
        assert pr.ratio.se == pytest.approx(stats.sem(pseudo), rel=1e-12)
        assert pr.t == pytest.approx(textbook.statistic, rel=1e-9)
        assert pr.p_two_sided > textbook.pvalue
    else:
        # HC2 with unequal sizes: each item's square weighs 1 / (1 − h_i), not n / (n − 1)
        assert pr.ratio.se != pytest.approx(stats.sem(pseudo), rel=1e-6)
    # the saving is real and the test sees it, in the right direction
    assert pr.t < 0 and pr.p_lower < 0.05 < pr.p_higher
    assert pr.p_lower + pr.p_higher == pytest.approx(1.0)
    assert pr.p_two_sided == pytest.approx(2 * min(pr.p_lower, pr.p_higher))


def test_paired_ratio_against_a_constant_baseline() -> None:
    # b: one unit per item, so R_b = 1 and its influence is 0: the paired ratio is R_a with a's
    # influence values; leverage and Kish weights average a's with b's (1/n each), so its SE
    # lies between the textbook one (h = 1/n) and ratio_estimate's HC2 one (h = den / Σ den)
    num, den = _items(7, n=6)
    ones = np.ones(len(num))
    pr = paired_ratio(num, den, ones, ones, level=LEVEL)
    single = ratio_estimate(num, den, level=LEVEL)
    assert pr.ratio.value == pytest.approx(single.value, rel=1e-12)
    ref = paired_ratio_by_hand(num, den, ones, ones)
    assert pr.ratio.se == pytest.approx(ref["se"], rel=1e-12)
    assert pr.ratio.df == pytest.approx(kish_df(num / num.sum() + 1 / 6), rel=1e-12)
    r = single.value
    u = (num - r * den) / den.mean() / r
    textbook = u.std(ddof=1) / math.sqrt(6)
    assert min(textbook, single.se) < pr.ratio.se < max(textbook, single.se)
    assert single.se == pytest.approx(float(_wls_fit(num, den).bse[0]) / r, rel=1e-10)
    assert pr.t == pytest.approx(math.log(r) / ref["se"], rel=1e-9)
    assert (pr.ratio.ci_low, pr.ratio.ci_high) == (
        pytest.approx(ref["ci_low"]),
        pytest.approx(ref["ci_high"]),
    )


def test_paired_ratio_swapping_the_pair_inverts_everything() -> None:
    num_a, den = _items(8, n=6)
    num_b = num_a * np.random.default_rng(9).lognormal(0.05, 0.05, 6)
    ab = paired_ratio(num_a, den, num_b, den, level=LEVEL)
    ba = paired_ratio(num_b, den, num_a, den, level=LEVEL)
    assert ba.ratio.value == pytest.approx(1 / ab.ratio.value)
    assert ba.ratio.se == pytest.approx(ab.ratio.se)
    assert ba.t == pytest.approx(-ab.t)
    assert (ba.p_lower, ba.p_higher) == (pytest.approx(ab.p_higher), pytest.approx(ab.p_lower))
    assert ba.ratio.ci_low == pytest.approx(1 / ab.ratio.ci_high)
    assert ba.ratio.ci_high == pytest.approx(1 / ab.ratio.ci_low)


def test_paired_ratio_with_equal_sizes_and_weights_is_the_textbook_paired_t() -> None:
    # equal denominators (h = 1/n) and numerator shares that sum to 2/n for every item (Kish
    # weights all equal: df = n − 1): the paired ratio is scipy's one-sample t on the
    # pseudo-values, interval and p-values included
    d = np.array([0.03, -0.02, 0.05, -0.04, 0.01, -0.03])
    share_a, share_b = 1 / 6 + d, 1 / 6 - d
    num_a, num_b, ones = 0.9 * share_a, share_b, np.ones(6)
    pr = paired_ratio(num_a, ones, num_b, ones, level=LEVEL)
    pseudo = _pseudo_values(num_a, ones, num_b, ones)
    ref = stats.ttest_1samp(pseudo, 0.0)
    assert pr.ratio.df == pytest.approx(5.0, rel=1e-12) and ref.df == 5
    assert pr.t == pytest.approx(ref.statistic, rel=1e-9)
    assert pr.p_two_sided == pytest.approx(ref.pvalue, rel=1e-9)
    assert pr.p_lower == pytest.approx(stats.ttest_1samp(pseudo, 0.0, alternative="less").pvalue)
    assert pr.p_higher == pytest.approx(
        stats.ttest_1samp(pseudo, 0.0, alternative="greater").pvalue
    )
    ci = ref.confidence_interval(confidence_level=LEVEL)
    assert pr.ratio.ci_low == pytest.approx(math.exp(ci.low), rel=1e-9)
    assert pr.ratio.ci_high == pytest.approx(math.exp(ci.high), rel=1e-9)


def test_paired_ratio_is_close_to_the_paired_t_on_differences_for_small_effects() -> None:
    # not an identity: to first order log(R_a/R_b) ≈ mean(a − b) / R and the pseudo-values'
    # spread ≈ sd(a − b) / R, so both tests agree closely when the change is small
    rng = np.random.default_rng(10)
    b = 2.0 * rng.lognormal(0.0, 0.2, 12)
    a = b * rng.lognormal(-0.02, 0.02, 12)
    ones = np.ones(12)
    pr = paired_ratio(a, ones, b, ones, level=LEVEL)
    rel = stats.ttest_rel(a, b)
    assert pr.t == pytest.approx(rel.statistic, rel=0.1)
    assert (pr.p_two_sided < 0.05) == (rel.pvalue < 0.05)


def test_paired_ratio_uses_only_items_measured_under_both() -> None:
    num_a, den = _items(11, n=6)
    num_b = num_a * 1.1
    num_b[0] = np.nan  # item 0 failed under b
    pr = paired_ratio(num_a, den, num_b, den, level=LEVEL)
    ref = paired_ratio(num_a[1:], den[1:], num_b[1:], den[1:], level=LEVEL)
    assert pr.ratio.n == 5
    assert pr.ratio.value == pytest.approx(ref.ratio.value)
    # a constant 10 % on every item: every pseudo-value is the same, no interval
    _assert_not_estimable(pr.ratio, "every one of the 5 paired items gives the same value")
    assert pr.ratio.value == pytest.approx(1 / 1.1)
    assert math.isnan(pr.t) and math.isnan(pr.p_lower)


# --- median_estimate: order statistics ------------------------------------------------------------


def test_median_estimate_matches_scipy_quantile_test_at_12_items() -> None:
    values = np.random.default_rng(12).lognormal(0.0, 0.3, 12)
    est = median_estimate(values, level=LEVEL)
    ci = stats.quantile_test(values, q=np.median(values), p=0.5).confidence_interval(LEVEL)
    assert est.value == pytest.approx(np.median(values))
    assert (est.ci_low, est.ci_high) == (ci.low, ci.high)
    # by hand: P(Bin(12, ½) ≤ 2) = 0.0193 ≤ 0.025 < P(≤ 3), so the 3rd and 10th order statistics
    assert stats.binom.cdf(2, 12, 0.5) <= 0.025 < stats.binom.cdf(3, 12, 0.5)
    ordered = np.sort(values)
    assert (est.ci_low, est.ci_high) == (ordered[2], ordered[9])
    assert est.level == LEVEL and est.estimable


@pytest.mark.parametrize("level", [0.5, 0.8, 0.9, 0.95, 0.99, 0.999])
def test_median_interval_is_the_one_scipy_quantile_test_gives(level: float) -> None:
    # parity with the reference for every sample size a study meets (3..400 items)
    rng = np.random.default_rng(int(level * 1000))
    for n in range(3, 401):
        values = rng.lognormal(0.0, 0.5, n)
        est = median_estimate(values, level=level)
        ci = stats.quantile_test(values, q=np.median(values), p=0.5).confidence_interval(level)
        if math.isfinite(ci.low) and math.isfinite(ci.high):
            assert (est.ci_low, est.ci_high, est.level) == (ci.low, ci.high, level), n
        else:  # out of reach at this n: min–max at its own level
            assert (est.ci_low, est.ci_high) == (values.min(), values.max()) and est.level < level


def test_median_estimate_of_5_items_is_min_to_max_at_93_75_pct() -> None:
    values = np.array([3.0, 1.0, 4.0, 1.5, 9.0])
    est = median_estimate(values, level=LEVEL)
    # 95 % is out of reach: P(min ≤ median ≤ max) = 1 − 2 · 0.5⁵
    ci = stats.quantile_test(values, q=3.0, p=0.5).confidence_interval(LEVEL)
    assert math.isnan(ci.low) or math.isnan(ci.high)
    assert (est.value, est.ci_low, est.ci_high) == (3.0, 1.0, 9.0)
    assert est.level == pytest.approx(1 - 2 * 0.5**5) == pytest.approx(0.9375)
    assert est.note == ""


# --- with_extra_se: Welch–Satterthwaite -----------------------------------------------------------


def test_with_extra_se_adds_in_quadrature_on_the_log_scale() -> None:
    num, den = _items(13, n=6)
    est = ratio_estimate(num, den, level=LEVEL)
    se_extra, df_extra = 0.01, 4.0  # in J/token
    out = with_extra_se(est, se_extra, df_extra)
    # on the log scale the extra error is relative to the value (delta method)
    r = num.sum() / den.sum()
    u = (num - r * den) / den.mean() / r
    se_items, df_items = hc2_se(u, den / den.sum()), kish_df(num)
    extra = se_extra / r
    se = math.sqrt(se_items**2 + extra**2)
    df = min(se**4 / (se_items**4 / df_items + extra**4 / df_extra), df_items)  # never above
    assert out.log_scale and out.value == est.value
    assert out.se == pytest.approx(se) and out.df == pytest.approx(df)
    assert min(df_items, df_extra) <= out.df <= df_items
    half = stats.t.ppf(0.975, df) * se
    assert (out.ci_low, out.ci_high) == (
        pytest.approx(r * math.exp(-half)),
        pytest.approx(r * math.exp(half)),
    )
    assert out.se > est.se
    # an extra error as large as the items' own (an idle baseline's, 1 df) widens both sides
    big = with_extra_se(est, 0.03, 1.0)
    assert big.se > 1.5 * est.se
    assert big.ci_low < est.ci_low and big.ci_high > est.ci_high
    # df_extra below 1 (a before/after pair without a df) counts as 1
    assert with_extra_se(est, se_extra, 0.0).df == pytest.approx(
        min(se**4 / (se_items**4 / df_items + extra**4 / 1.0), df_items)
    )


def test_with_extra_se_on_the_linear_scale_adds_in_the_estimates_units() -> None:
    num, den = _items(13, n=6)
    num[0] = -1.0  # a dip below the idle baseline: the linear scale
    est = ratio_estimate(num, den, level=LEVEL)
    assert not est.log_scale
    out = with_extra_se(est, 0.01, 4.0)
    r = num.sum() / den.sum()
    se_items = hc2_se((num - r * den) / den.mean(), den / den.sum())
    df_items = kish_df(den)
    se = math.hypot(se_items, 0.01)
    df = min(se**4 / (se_items**4 / df_items + 0.01**4 / 4.0), df_items)
    half = stats.t.ppf(0.975, df) * se
    assert not out.log_scale
    assert out.se == pytest.approx(se) and out.df == pytest.approx(df)
    assert (out.ci_low, out.ci_high) == (pytest.approx(r - half), pytest.approx(r + half))
    assert out.se > est.se
    big = with_extra_se(est, 0.1, 1.0)
    assert big.ci_low < est.ci_low and big.ci_high > est.ci_high


@pytest.mark.parametrize(("se_extra", "df_extra"), [(0.005, 1.0), (0.01, 4.0)])
def test_with_extra_se_never_narrows_the_interval(se_extra: float, df_extra: float) -> None:
    est = ratio_estimate(*_items(13, n=6), level=LEVEL)
    out = with_extra_se(est, se_extra, df_extra)
    assert out.se > est.se  # holds: the SE grows …
    # … but the df grow more (3.83 → 4.09 with 1 df, → 4.92 with 4): the t quantile falls
    assert out.ci_low <= est.ci_low and out.ci_high >= est.ci_high


def test_with_extra_se_without_an_extra_error_changes_nothing() -> None:
    est = ratio_estimate(*_items(14, n=5), level=LEVEL)
    assert with_extra_se(est, math.nan, math.nan) == est
    assert with_extra_se(est, 0.0, 3.0) == est
    none = not_estimable(1.0, 2, "2 items", LEVEL)
    assert with_extra_se(none, 0.01, 3.0) == none


def test_widen_recomputes_the_interval_at_another_level() -> None:
    est = ratio_estimate(*_items(15, n=6), level=LEVEL)
    wide = widen(est, 1 - 0.05 / 12)
    num, _den = _items(15, n=6)
    assert est.df == pytest.approx(kish_df(num))  # the df stay the estimate's own
    half = stats.t.ppf(1 - 0.05 / 24, kish_df(num)) * est.se
    assert wide.ci_low == pytest.approx(est.value * math.exp(-half))
    assert wide.ci_high == pytest.approx(est.value * math.exp(half))
    assert wide.ci_low < est.ci_low and wide.ci_high > est.ci_high
    kept = widen(not_estimable(1.0, 1, "1 item", LEVEL), 0.99)
    _assert_not_estimable(kept, "1 item")
    assert kept.level == 0.99


@pytest.mark.parametrize("df", [1.0, 2.5, 4.0, 11.3, 1e3])
def test_t_quantiles_and_tails_are_scipy_stats_t_bit_for_bit(df: float) -> None:
    # estimators and selection call scipy.special's stdtrit / stdtr (what scipy.stats.t's ppf,
    # cdf and sf call), so that the plots stage never imports scipy.stats: the same numbers
    est = Estimate(1.2, 1.0, 1.4, se=0.05, df=df, n=5, level=LEVEL, log_scale=True)
    centre, level = math.log(1.2), 1 - 0.05 / 12
    half = float(stats.t.ppf(0.5 + level / 2, df)) * est.se
    assert (widen(est, level).ci_low, widen(est, level).ci_high) == (
        math.exp(centre - half),
        math.exp(centre + half),
    )
    t = centre / est.se
    tested = PairedRatio.tested(est)
    assert tested.p_two_sided == float(2.0 * stats.t.sf(abs(t), df))
    assert (tested.p_lower, tested.p_higher) == (stats.t.cdf(t, df), stats.t.sf(t, df))
    bound = math.exp(centre + float(stats.t.ppf(1 - 0.05, df)) * est.se)
    assert upper_bound(est, 0.05) == bound


# --- every "not estimable" edge: a note and NaN bounds, never a zero-width interval ---------------


@pytest.mark.parametrize(
    ("num", "den", "why"),
    [
        ([], [], "no items"),
        ([2.0], [4.0], "1 item (an interval needs ≥ 3)"),
        ([2.0, 3.0], [4.0, 5.0], "2 items (an interval needs ≥ 3)"),
        ([2.0, 3.0, 5.0], [4.0, 6.0, 10.0], "every one of the 3 items gives the same value"),
        ([2.0, 3.0, 5.0], [0.0, 0.0, 0.0], "no item has a positive denominator"),
        ([2.0, 3.0, 5.0], [4.0, 0.0, 0.0], "1 item (an"),  # two zero-token items left out
    ],
)
def test_ratio_estimate_not_estimable(num: list, den: list, why: str) -> None:
    est = ratio_estimate(np.array(num), np.array(den), level=LEVEL)
    _assert_not_estimable(est, why)
    assert "1 items" not in est.note  # singular for one item
    if est.n:
        assert est.value == pytest.approx(
            sum(n for n, d in zip(num, den, strict=True) if d > 0) / sum(den)
        )
    else:
        assert math.isnan(est.value)


def test_mean_and_median_not_estimable() -> None:
    _assert_not_estimable(mean_estimate(np.array([]), level=LEVEL), "no items")
    _assert_not_estimable(mean_estimate(np.array([1.0, 3.0]), level=LEVEL), "2 items")
    same = mean_estimate(np.full(5, 0.7), level=LEVEL)
    _assert_not_estimable(same, "every one of the 5 items gives the same value")
    assert same.value == pytest.approx(0.7) and same.n == 5
    zeros = mean_estimate(np.zeros(4), level=LEVEL)  # the linear scale has the same check
    _assert_not_estimable(zeros, "every one of the 4 items gives the same value")
    _assert_not_estimable(median_estimate(np.array([]), level=LEVEL), "0 items")
    _assert_not_estimable(median_estimate(np.array([1.0, 2.0]), level=LEVEL), "2 items")
    flat = median_estimate(np.full(6, 2.5), level=LEVEL)
    _assert_not_estimable(flat, "every one of the 6 items gives the same value")
    assert flat.value == 2.5
    one = median_estimate(np.array([np.nan, 4.0, np.nan]), level=LEVEL)
    _assert_not_estimable(one, "not estimable: 1 item (an interval needs ≥ 3)")
    assert one.value == 4.0 and one.n == 1


def test_paired_ratio_not_estimable() -> None:
    none = paired_ratio(np.array([]), np.array([]), np.array([]), np.array([]), level=LEVEL)
    _assert_not_estimable(none.ratio, "no item measured under both")
    nan4 = np.full(4, np.nan)
    disjoint = paired_ratio(np.ones(4), np.ones(4), nan4, nan4, level=LEVEL)
    _assert_not_estimable(disjoint.ratio, "no item measured under both")
    two = paired_ratio(
        np.array([1.0, 2.0]), np.ones(2), np.array([1.5, 2.1]), np.ones(2), level=LEVEL
    )
    _assert_not_estimable(two.ratio, "2 paired items (an interval needs ≥ 3)")
    assert math.isnan(two.t) and math.isnan(two.p_two_sided) and math.isnan(two.p_higher)
    assert two.ratio.value == pytest.approx(1.5 / 1.8)
    one = paired_ratio(np.array([1.0]), np.ones(1), np.array([2.0]), np.ones(1), level=LEVEL)
    _assert_not_estimable(one.ratio, "not estimable: 1 paired item (an interval needs ≥ 3)")


def test_min_items_is_three() -> None:
    assert MIN_ITEMS == 3
    # linear scale, equal sizes: 3 items are t with 2 df
    lin = ratio_estimate(np.array([-1.0, 2.0, 4.0]), np.ones(3), level=LEVEL)
    assert lin.estimable and not lin.log_scale and lin.df == 2
    assert lin.ci_high - lin.value == pytest.approx(stats.t.ppf(0.975, 2) * lin.se)
    # log scale: Kish's effective number of the 3 values, 7² / 21 = 2.33, minus one
    est = ratio_estimate(np.array([1.0, 2.0, 4.0]), np.ones(3), level=LEVEL)
    assert est.estimable and est.df == pytest.approx(49 / 21 - 1)
    # the interval at 3 items is wide but never of zero width
    assert est.ci_high - est.ci_low > 0
    assert math.log(est.ci_high / est.value) == pytest.approx(
        stats.t.ppf(0.975, 49 / 21 - 1) * est.se
    )


def test_kish_df_is_at_least_one() -> None:
    # one item carries nearly all of Σ num: (Σw)² / Σw² = 1.006, so df would be 0.006
    est = ratio_estimate(np.array([1000.0, 1.0, 2.0]), np.ones(3), level=LEVEL)
    kish = 1003.0**2 / (1000.0**2 + 1.0**2 + 2.0**2)
    assert 0 < kish - 1 < 0.01
    assert est.estimable and est.df == 1.0
    assert math.log(est.ci_high / est.value) == pytest.approx(stats.t.ppf(0.975, 1) * est.se)


# --- coverage --------------------------------------------------------------------------------------


def test_ratio_interval_covers_the_population_ratio_at_5_items() -> None:
    # 5 items, natural-length token counts, 10 % lognormal item costs: E[num] / E[den] =
    # 0.5 · exp(0.1² / 2); the 95 % interval must hold it in ≥ 92 % of 2000 draws (binomial SE
    # 0.5 percentage points: a real shortfall, not noise, would fail). 94.95 % at this seed
    rng = np.random.default_rng(20240)
    truth = 0.5 * math.exp(0.1**2 / 2)
    covered = 0
    for _ in range(2000):
        den = np.round(rng.lognormal(np.log(40.0), 0.3, 5))
        num = 0.5 * den * rng.lognormal(0.0, 0.1, 5)
        est = ratio_estimate(num, den, level=LEVEL)
        covered += est.ci_low <= truth <= est.ci_high
    assert covered / 2000 >= 0.92


def test_paired_test_holds_its_size_at_5_items_of_natural_length() -> None:
    # what HC2 and Kish's df are for: 5 items of natural length (tokens lognormal, sd 0.5), item
    # costs that differ (30 %), 5 % window noise, no true change. A nominal 5 % test rejects
    # 4.9 % of 4000 draws at this seed (the textbook sd / √n with n − 1 df: 7.7 %, over seeds
    # 7.7–8.4 %); binomial SE 0.34 points, so 6.5 % is 4.4 SEs above 5 % and fails the old rule
    rng = np.random.default_rng(1)
    rejected = 0
    for _ in range(4000):
        tokens = np.maximum(np.round(40.0 * rng.lognormal(0.0, 0.5, 5)), 1.0)
        cost = 0.5 * tokens * rng.lognormal(0.0, 0.3, 5)
        a = cost * rng.lognormal(0.0, 0.05, 5)
        b = cost * rng.lognormal(0.0, 0.05, 5)
        rejected += paired_ratio(a, tokens, b, tokens, level=LEVEL).p_two_sided < 0.05
    assert 0.035 <= rejected / 4000 <= 0.065
