"""Rate mode: the rate's trend, a level and a slope of its ratio to the reference, with their
standard errors, fitted at many origins and series at once (:func:`fit_trend`).

The level and slope are fitted to the hourly ratios ``rate / reference`` of the last
``trend_seconds``, weighted by the reference (quiet nights count little). Besides a constant
and a line, the fit tries a ramp that began a third or two thirds into the window, a ramp
that ended there and a step at any whole hour, and keeps the one with the lowest BIC among
those whose slope (or step) is ``trend_z`` standard errors from zero (a ramp that ended or a
step must also beat the line by ``trend_z`` standard errors, a step any ramp that began at a
whole hour too; a ramp that ended must have been the choice an hour and two hours earlier as
well, ``ENDED_PERSIST_SECONDS``): a ramp that began this morning is extrapolated at its own
pace rather than averaged with the flat night before it - the seasonal profile no longer
hides a creep at night or over a weekend - and neither a ramp that has ended nor a step (a
new workload beside the old: a flat extra rate) is extrapolated. That choice decides (the
guard is built from it); where it has a slope, the point forecast takes its level
and slope from the same choice with the ramp's beginning searched over the window's whole
hours, so that a ramp a few hours old is timed at its own pace, and with the hours weighted by
the reference to a power between 0 and 1 chosen from the tenant's own hour-to-hour noise (1
where a quiet hour's ratio is noisier, as with counts; 0 where every hour's ratio is equally
noisy, as with multiplicative noise).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from anomaly.models.forecast.common import cumsum0, finite_or, quiet

KINK_MARGIN_SECONDS = 4 * 3600.0
"""The timing fit places a ramp's beginning at whole hours at least this far from both ends of
the trend window."""
ENDED_PERSIST_SECONDS = 2 * 3600.0
"""A ramp is taken for ended only if the decision took it for ended at the origins this far
back too, hour by hour (see :func:`fit_trend`)."""
NOISE_EXPONENTS = (0.0, 0.25, 0.5, 0.75, 1.0)
"""The exponents ``p`` the timing fit chooses from, per series, for its block weights
``sum(reference)**p`` (1: counting noise, 0: multiplicative noise)."""
MIN_NOISE_PAIRS = 6
"""Adjacent block pairs needed to choose ``p``; with fewer the weights stay ``**1``."""


class Trend(NamedTuple):
    """A rate's fitted trend at each origin; every field has shape ``(n_o, n_s)``.

    ``level`` and ``slope`` time the point forecast; ``decided_level`` and ``decided_slope``,
    with their standard errors, are the coarser fit the guard (the decision) is built from.
    Levels are ratios ``rate / u - 1`` at the origin, slopes their growth per day.
    """

    level: np.ndarray
    slope: np.ndarray
    decided_level: np.ndarray
    decided_slope: np.ndarray
    se_level: np.ndarray
    se_slope: np.ndarray


def fit_trend(
    rate: np.ndarray,
    u: np.ndarray,
    origins: np.ndarray,
    step: float,
    w: int,
    z: float,
    v: np.ndarray | None = None,
) -> Trend:
    """Level and slope of the rate's ratio to its reference at each origin, with standard errors.

    Parameters
    ----------
    rate, u : array, shape (n_t, n_s)
        The rate and its seasonal reference on the same grid.
    origins : array of int, shape (n_o,)
        Indices of the newest point each fit may see.
    step : float
        Grid spacing in seconds.
    w : int
        Points of history each fit reads (the trend window).
    z : float
        How many standard errors a slope must be from zero to be kept.
    v : array, shape (n_t, n_s), optional
        What the trend scales: the rate is modelled as ``u + v * (level + slope * lead)``.
        By default `u` itself (a multiplicative trend, ``u * (1 + level + slope * lead)``, the
        growth following the daily shape); a constant per series makes the trend additive
        (a growth added to the daily shape, not bent by it).

    Returns
    -------
    Trend
        Each field of shape ``(n_o, n_s)``.

    The window is cut into hourly blocks, each summarised by ``(sum(rate) - sum(u)) / sum(v)``
    (``sum(rate) / sum(u) - 1`` when `v` is `u`) and weighted by ``sum(v)`` (quiet nights count
    little; hourly blocks are nearly independent, so the standard errors are honest).
    Candidate models, each a weighted least-squares fit: a constant level; a line over the
    whole window; a ramp that began at one or two thirds of the window (flat before); a step
    at any whole hour of it (flat before and since: a new workload is a step in the rate, and
    a ramp that began at a third and ran on since would extrapolate it); a ramp that ended at
    a third (flat since). A model other than the constant needs a slope (a step: its jump)
    `z` standard errors from zero and the lowest BIC (a ramp's kink costs one more
    parameter, and so does a step's place); a step or a ramp that ended must moreover fit
    better than the line by `z` standard errors (its residual sum of squares lower by
    ``z**2`` residual variances), and a step better than a ramp that began at any whole hour
    as well, so that the noise of a few flat-looking hours does not stop a ramp that runs on
    nor a young ramp pass for a step. A recent ramp is extrapolated at its own pace, not
    averaged with the flat hours before it, and neither a finished ramp nor a step is
    extrapolated at all.

    That choice is the *decision*: ``decided_level``, ``decided_slope`` and the standard errors,
    which the guard is built from. The *timing* (``level``, ``slope``) makes the same choice
    with a ramp allowed to begin at any whole hour of the window but its first and last
    ``KINK_MARGIN_SECONDS`` (a ramp that began 9 hours ago is not forced to have begun 12 or
    24 hours ago); it is used where both choices have a slope (a line or a ramp that began),
    elsewhere the decision is. The searched kink sharpens when a breach comes, never whether
    it is announced: with that many kinks to choose from, noise alone often finds a
    significant one. The timing fit also weights its blocks by ``sum(u)**p`` rather than
    ``sum(u)``, with ``p`` chosen per origin and series from how the hour-to-hour changes of
    the ratio scale with ``u`` (:func:`noise_exponent`): ``sum(u)`` weights are right for
    counting noise, equal weights for multiplicative noise, under which the quiet hours of a
    young ramp would otherwise count too little. The decision keeps ``sum(u)``: given the chosen
    weights as well, it warned more steady tenants and missed more breaches in the benchmark.

    A ramp that ended is allowed at an origin only if the decision chose one at each of the
    origins 1, 2, ... hours earlier, up to ``ENDED_PERSIST_SECONDS``: had the ramp ended a
    third of the window ago, those fits would have seen it too. A decision that flips to
    "ended" for one run rests on the newest hour or two - often an error of the reference
    there - and would drop a warning in the middle of a ramp that runs on.
    """
    per_block = max(1, round(3600.0 / step))
    n_blocks = max(3, w // per_block)
    block_hours = per_block * step / 3600.0
    # The origins and the same an hour earlier, two hours earlier, ... (the decisions there
    # tell whether an ended ramp persists), each fitted once: walk-forward origins half an
    # hour apart are mostly each other's earlier origins.
    n_o = origins.size
    persist = max(0, round(ENDED_PERSIST_SECONDS / 3600.0))
    every, where = np.unique(
        np.concatenate(
            [origins] + [np.maximum(origins - per_block * j, 0) for j in range(1, persist + 1)]
        ),
        return_inverse=True,
    )
    now_at = where[:n_o]
    blocks = _hourly_blocks(rate, u, u if v is None else v, every, per_block, n_blocks)
    x = (-(np.arange(n_blocks) + 0.5) * block_hours)[:, None, None]  # block centres, hours back
    thirds = sorted({round(n_blocks / 3), round(2 * n_blocks / 3)} - {0, n_blocks})
    edge = max(1, round(KINK_MARGIN_SECONDS / 3600.0 / block_hours))
    hourly = list(range(edge, n_blocks - edge + 1))
    stepped = list(range(1, n_blocks))

    with np.errstate(invalid="ignore", divide="ignore"):
        # The decision (kinks at the thirds, weights sum(u)), at every fitted origin: where
        # the earlier ones chose a ramp that ended, the newer may too.
        coarse = _candidates(blocks, x, block_hours, thirds, thirds, z, stepped)
        allowed: np.ndarray | None = None
        if persist:
            ended_then = _choose(coarse)[2][where[n_o:]]
            allowed = np.asarray(
                ended_then.reshape((persist, n_o) + ended_then.shape[1:]).all(axis=0)
            )
        coarse = [None if c is None else c.at(now_at) for c in coarse]
        blocks = blocks.at(now_at)
        decided, decided_sloped, _ = _choose(_ended_only_where(coarse, allowed))
        # The timing (kinks at every whole hour, weights sum(u)**p), at the origins only.
        p = noise_exponent(blocks.q, blocks.wt, blocks.good)
        timed_blocks = blocks._replace(wt=np.where(blocks.good, blocks.wt ** p[None], 0.0))
        timed_fits = _candidates(timed_blocks, x, block_hours, hourly, thirds, z, stepped)
        timed, timed_sloped, _ = _choose(_ended_only_where(timed_fits, allowed))
    use = decided_sloped & timed_sloped
    a, b, sa, sb = decided.level, decided.slope, decided.se_level, decided.se_slope
    a_t = np.where(use, timed.level, a)
    b_t = np.where(use, timed.slope, b)
    return Trend(
        finite_or(a_t, 0.0),
        finite_or(b_t, 0.0),
        finite_or(a, 0.0),
        finite_or(b, 0.0),
        finite_or(sa, np.inf),
        finite_or(sb, np.inf),
    )


class _Blocks(NamedTuple):
    """Each fit's window cut into hourly blocks, newest first; every field ``(n_blocks, n_fits,
    n_s)``. Sums along axis 0 add whole rows, so a column's result does not depend on how many
    columns there are, to the last bit."""

    q: np.ndarray
    """The block's ratio ``(sum(rate) - sum(u)) / sum(v)`` (0 where not `good`)."""
    wt: np.ndarray
    """The block's weight (``sum(v)`` scaled to mean 1 over the good blocks; 0 where not good)."""
    good: np.ndarray
    """Whether the block counts: at least half its points seen and a positive `v`."""

    def at(self, fits: np.ndarray) -> _Blocks:
        """The blocks of the fits at indices `fits` (along axis 1)."""
        return _Blocks(*(f[:, fits] for f in self))


def _hourly_blocks(
    rate: np.ndarray, u: np.ndarray, v: np.ndarray, ends: np.ndarray, per_block: int, n_blocks: int
) -> _Blocks:
    """The `n_blocks` blocks of `per_block` points ending at each index of `ends` (``(n_fits,)``)."""
    ok = np.isfinite(rate) & np.isfinite(u) & np.isfinite(v) & (v > 0)
    cr = cumsum0(np.where(ok, rate - u, 0.0))
    cv = cumsum0(np.where(ok, v, 0.0))
    cn = cumsum0(ok)
    i = np.arange(n_blocks)
    hi = np.maximum(ends[None, :] + 1 - per_block * i[:, None], 0)
    lo = np.maximum(hi - per_block, 0)
    ds, vs, ns = cr[hi] - cr[lo], cv[hi] - cv[lo], cn[hi] - cn[lo]
    good = (ns >= per_block / 2) & (vs > 0)
    with quiet():
        q = np.where(good, ds / np.where(good, vs, 1.0), 0.0)
        scale = np.nanmean(np.where(good, vs, np.nan), axis=0)
        wt = np.where(good & (scale > 0), vs / scale, 0.0)
    return _Blocks(q, finite_or(wt, 0.0), good)


class _Fits(NamedTuple):
    """Weighted least-squares fits of candidate trend models, each field ``(n_m, n_o, n_s)``."""

    level: np.ndarray
    slope: np.ndarray
    se_level: np.ndarray
    se_slope: np.ndarray
    rss: np.ndarray
    s2: np.ndarray
    bic: np.ndarray
    ok: np.ndarray
    """Whether the model may be chosen (its slope is significant, enough blocks)."""

    def at(self, fits: np.ndarray) -> _Fits:
        """The fits at indices `fits` (along axis 1)."""
        return _Fits(*(f[:, fits] for f in self))

    def models(self, index: list[int]) -> _Fits:
        """The models at `index` (along axis 0)."""
        return _Fits(*(f[index] for f in self))


class _Moments(NamedTuple):
    """Weighted moments of the block ratios ``q`` at block centres ``x``.

    The first five fields are cumulative over the newest k blocks, k = 0..n_blocks along axis
    0: every model is a line in ``x`` over a run of blocks (its regressor ``x - c`` there and 0
    elsewhere), so its normal equations are differences of these.
    """

    w: np.ndarray
    wx: np.ndarray
    wxx: np.ndarray
    wq: np.ndarray
    wxq: np.ndarray
    wqq: np.ndarray
    """Total of ``w q**2`` over the window, ``(n_o, n_s)``."""
    n_eff: np.ndarray
    """Kish's effective number of blocks, ``(n_o, n_s)``."""

    @property
    def runs(self) -> tuple[np.ndarray, ...]:
        """The cumulative fields."""
        return self.w, self.wx, self.wxx, self.wq, self.wxq

    @staticmethod
    def of(wt: np.ndarray, q: np.ndarray, x: np.ndarray) -> _Moments:
        """The moments of ratios `q` with weights `wt` (``(n_blocks, n_o, n_s)``) at `x`."""
        w, wx, wxx, wq, wxq = (cumsum0(v) for v in (wt, wt * x, wt * x * x, wt * q, wt * x * q))
        n_eff = w[-1] ** 2 / (wt * wt).sum(axis=0)
        return _Moments(w, wx, wxx, wq, wxq, (wt * q * q).sum(axis=0), n_eff)


def _candidates(
    blocks: _Blocks,
    x: np.ndarray,
    block_hours: float,
    began_at: list[int],
    ended_at: list[int],
    z: float,
    stepped_at: list[int],
) -> list[_Fits | None]:
    """The constant, the line, ramps that began `began_at` blocks before the origin (``None``
    without any), steps `stepped_at` blocks before it (``None`` without any) and ramps that
    ended `ended_at` blocks before it, fitted to the block ratios with the block weights; `x`
    ``(n_blocks, 1, 1)`` holds the block centres in hours (negative, before the origin). A
    step or a ramp that ended stops a growth: it must fit better than the line by `z`
    standard errors (its residual sum of squares lower by ``z**2`` residual variances), and a
    step better than a ramp that began at any hour of `stepped_at` as well."""
    mo = _Moments.of(blocks.wt, blocks.q, x)
    n_good = blocks.good.sum(axis=0)
    n_blocks = x.shape[0]
    constant = _constant_fit(mo)
    line = _ramp_fits(mo, [n_blocks], block_hours, n_good, z, began=True, kinked=False)
    ended = _ramp_fits(mo, ended_at, block_hours, n_good, z, began=False, kinked=True)
    ended = ended._replace(ok=ended.ok & (line.rss - ended.rss > z * z * ended.s2))
    # Ramps that began at any hour a candidate ramp or step needs, fitted once.
    hours = sorted(set(began_at) | set(stepped_at))
    ramps = (
        _ramp_fits(mo, hours, block_hours, n_good, z, began=True, kinked=True) if hours else None
    )
    began = ramps.models([hours.index(k) for k in began_at]) if ramps and began_at else None
    step = None
    if ramps and stepped_at:
        # A step must be told from a young ramp, too: it beats the line and a ramp that began
        # at any of the same hours.
        step = _step_fits(mo, stepped_at, n_good, z)
        young = ramps.models([hours.index(k) for k in stepped_at])
        with quiet():
            sloped = np.fmin(line.rss[0], np.nanmin(young.rss, axis=0))
        step = step._replace(ok=step.ok & (sloped - step.rss > z * z * step.s2))
    return [constant, line, began, step, ended]


def _constant_fit(mo: _Moments) -> _Fits:
    """The constant level over the whole window: always allowed, the fallback."""
    sw, sq = mo.w[-1], mo.wq[-1]
    level = np.where(sw > 0, sq / sw, 0.0)
    rss0 = np.maximum(mo.wqq - level * sq, 0.0)
    var0 = rss0 / np.maximum(mo.n_eff - 1, 1) / sw
    return _Fits(
        level[None],
        np.zeros((1,) + level.shape),
        np.sqrt(var0)[None],
        np.zeros((1,) + level.shape),
        rss0[None],
        var0[None],
        (mo.n_eff * np.log(np.maximum(rss0 / sw, 1e-12)))[None],
        np.ones((1,) + level.shape, dtype=bool),
    )


def _ramp_fits(
    mo: _Moments,
    blocks: list[int],
    block_hours: float,
    n_good: np.ndarray,
    z: float,
    *,
    began: bool,
    kinked: bool,
) -> _Fits:
    """Ramps that began (``began``: flat before) or ended (flat since) `blocks` blocks before
    the origin, one model each; ``kinked`` charges the BIC one more parameter for the kink.
    A ramp is allowed where its slope is `z` standard errors from zero and at least 4 of the
    blocks (`n_good`, ``(n_o, n_s)``) count."""
    k = np.array(blocks)
    c = (-k * block_hours)[:, None, None]
    sw, sq = mo.w[-1], mo.wq[-1]
    s, sx, sxx, sq_, sxq = (v[k] for v in mo.runs) if began else (v[-1] - v[k] for v in mo.runs)
    sg = sx - c * s
    sgg = sxx - 2.0 * c * sx + c * c * s
    sgq = sxq - c * sq_
    det = sw * sgg - sg * sg
    beta = (sw * sgq - sg * sq) / det
    alpha = (sq - beta * sg) / sw
    rss = np.maximum(mo.wqq - alpha * sq - beta * sgq, 0.0)
    s2 = rss / np.maximum(mo.n_eff - 2, 1)  # residual variance per unit weight
    var_beta = s2 * sw / det
    g0 = -c if began else 0.0  # the regressor at the origin
    var_level = s2 * (1.0 / sw + (g0 - sg / sw) ** 2 * sw / det)
    per_day = 24.0 if began else 0.0  # a slope per hour to one per day; flat since: none
    bic = mo.n_eff * np.log(np.maximum(rss / sw, 1e-12)) + (1.0 + kinked) * np.log(mo.n_eff)
    chosen = (det > 1e-12) & (beta * beta > z * z * var_beta) & (n_good >= 4)
    return _Fits(
        alpha + beta * g0,
        beta * per_day,
        np.sqrt(var_level),
        np.sqrt(var_beta) * per_day,
        rss,
        s2,
        bic,
        chosen,
    )


def _step_fits(mo: _Moments, blocks: list[int], n_good: np.ndarray, z: float) -> _Fits:
    """Steps of the level `blocks` blocks before the origin (flat before and since), one
    model each: a new workload beside the old is a step in the rate, not a ramp to carry on.
    A step is allowed where it is `z` standard errors from zero and at least 4 of the blocks
    (`n_good`, ``(n_o, n_s)``) count."""
    k = np.array(blocks)
    sw, sq = mo.w[-1], mo.wq[-1]
    s_new, q_new = mo.w[k], mo.wq[k]
    s_old, q_old = sw - s_new, sq - q_new
    level = q_new / s_new
    jump = level - q_old / s_old
    rss = np.maximum(mo.wqq - q_new * level - q_old * q_old / s_old, 0.0)
    s2 = rss / np.maximum(mo.n_eff - 2, 1)
    var_jump = s2 * (1.0 / s_new + 1.0 / s_old)
    bic = mo.n_eff * np.log(np.maximum(rss / sw, 1e-12)) + 2.0 * np.log(mo.n_eff)
    chosen = (s_new > 0) & (s_old > 0) & (jump * jump > z * z * var_jump) & (n_good >= 4)
    zero = np.zeros_like(level)
    return _Fits(level, zero, np.sqrt(s2 / s_new), zero, rss, s2, bic, chosen)


def _ended_only_where(fits: list[_Fits | None], allowed: np.ndarray | None) -> list[_Fits | None]:
    """Candidates `fits` with a ramp that ended (the last family) allowed only where `allowed`
    ``(n_o, n_s)``: where the earlier decisions chose one too (``None``: everywhere)."""
    ended = fits[-1]
    if ended is None or allowed is None:
        return fits
    return fits[:-1] + [ended._replace(ok=ended.ok & allowed[None])]


def _choose(candidates: list[_Fits | None]) -> tuple[_Fits, np.ndarray, np.ndarray]:
    """Per origin and series, the allowed candidate of lowest BIC (the first on ties), whether
    it has a slope (a line or a ramp that began) and whether it is of the last family (the
    ramps that ended); fields and flags of shape ``(n_o, n_s)``.

    The first candidate is the constant, the fallback where nothing else is allowed; ``None``
    stands for a family without members (a window too short for kinks).
    """
    present = [c for c in candidates if c is not None]
    stacked = _Fits(*(np.concatenate(f, axis=0) for f in zip(*present, strict=True)))
    bic = np.where(stacked.ok & np.isfinite(stacked.bic), stacked.bic, np.inf)
    bic[0] = np.where(np.isfinite(bic[0]), bic[0], -np.inf)  # the constant is the fallback
    pick = np.argmin(bic, axis=0)[None]
    chosen = _Fits(*(np.take_along_axis(f, pick, axis=0)[0] for f in stacked))
    last = candidates[-1]
    n_last = 0 if last is None else last.level.shape[0]
    return chosen, chosen.slope != 0.0, pick[0] >= stacked.level.shape[0] - n_last


def noise_exponent(q: np.ndarray, wt: np.ndarray, good: np.ndarray) -> np.ndarray:
    """How a block's noise variance scales with its reference: ``var(q) ~ wt**-p``, per fit.

    Parameters
    ----------
    q, wt, good : array, shape (n_blocks, n_o, n_s)
        Hourly ratios, their weights (the reference's sum, scaled to mean 1) and which blocks
        count; adjacent along axis 0.

    Returns
    -------
    array, shape (n_o, n_s)
        ``p`` in ``NOISE_EXPONENTS``: 1 for counting noise (a quiet hour's ratio is noisier),
        0 for multiplicative noise (every hour's ratio equally noisy). It is the maximum
        likelihood choice for the changes between adjacent blocks, whose variance is
        ``s2 * (wt_i**-p + wt_j**-p)``: differences cancel the level and, nearly, the slope, so
        a ramp does not pass for noise. With fewer than ``MIN_NOISE_PAIRS`` pairs, 1.
    """
    pair = good[1:] & good[:-1]
    d2 = np.where(pair, q[1:] - q[:-1], 0.0) ** 2
    inv = 1.0 / np.where(good & (wt > 0), wt, 1.0)
    n = pair.sum(axis=0)
    best_ll = np.full(q.shape[1:], -np.inf)
    best_p = np.ones(q.shape[1:])
    for p in NOISE_EXPONENTS:
        v = np.where(pair, inv[1:] ** p + inv[:-1] ** p, 1.0)
        s2 = (d2 / v).sum(axis=0) / np.maximum(n, 1)
        ll = -n * np.log(np.maximum(s2, 1e-300)) - np.log(v).sum(axis=0)
        better = ll > best_ll
        best_p = np.where(better, p, best_p)
        best_ll = np.where(better, ll, best_ll)
    return np.where(n >= MIN_NOISE_PAIRS, best_p, 1.0)


STEP_CLEAR = 4.0
"""A step :func:`stepped` holds must exceed this many residual standard deviations of the
hourly means (besides being significant): a slow wander is significant too."""
YOUNG_STEP_BLOCKS = 8
"""A step this many hours old or younger is also tested with the hour it happened in left out
(:func:`stepped`): that hour's mean lies between the two levels, and while the new level has
only a few hours, it alone can make a young ramp fit as well as the step."""


def stepped(d: np.ndarray, step: float, window_seconds: float, z: float) -> np.ndarray:
    """Per series, whether the newest `window_seconds` of `d` ``(n_t, n_s)`` are a step of the
    level (flat before and since) rather than a constant, a line or a ramp: :func:`fit_trend`'s
    candidates on hourly means of `d` with equal weights, a step's lowest BIC below every
    other's (a tie is no step, where the decision takes the earlier family), and a jump of
    at least ``STEP_CLEAR`` residual standard deviations of those means (significance alone
    passes the slow wander of autocorrelated noise, whose hourly means are not independent).
    A plain forecast replays yesterday's change; a step in it must not be replayed.

    A step 2 to ``YOUNG_STEP_BLOCKS`` hours old is tried again with the hour it happened in
    left out, where that hour's mean lies between the levels either side: a step is seldom
    on the hour, and the mixed hour would otherwise pass a step a few hours old for a ramp.
    """
    per_block = max(1, round(3600.0 / step))
    n_blocks = max(3, min(round(window_seconds / (per_block * step)), d.shape[0] // per_block))
    block_hours = per_block * step / 3600.0
    flat = np.zeros_like(d)
    blocks = _hourly_blocks(d, flat, flat + 1.0, np.array([d.shape[0] - 1]), per_block, n_blocks)
    x = (-(np.arange(n_blocks) + 0.5) * block_hours)[:, None, None]
    held, _, _ = _step_verdict(blocks, x, block_hours, z)
    for t in range(2, min(YOUNG_STEP_BLOCKS, n_blocks - 3) + 1):
        # Block t (t hours back) left out: a step right before it, new level in blocks < t.
        keep = (np.arange(n_blocks) != t)[:, None, None]
        without = blocks._replace(wt=np.where(keep, blocks.wt, 0.0), good=blocks.good & keep)
        is_step, at, level = _step_verdict(without, x, block_hours, z)
        new, old = level
        q_t = blocks.q[t, 0]
        between = blocks.good[t, 0] & ((q_t - new) * (q_t - old) <= 0)
        held |= is_step & (at == t) & between
    return held


def _step_verdict(
    blocks: _Blocks, x: np.ndarray, block_hours: float, z: float
) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Whether the blocks (one fit, ``(n_blocks, 1, n_s)``) are a clear step (see
    :func:`stepped`), per series; the best step's place (blocks of the new level) and its
    levels (new, old)."""
    n_blocks = x.shape[0]
    thirds = sorted({round(n_blocks / 3), round(2 * n_blocks / 3)} - {0, n_blocks})
    at = list(range(1, n_blocks))
    n_s = blocks.q.shape[2]
    cols = np.arange(n_s)
    with np.errstate(invalid="ignore", divide="ignore"):
        fits = _candidates(blocks, x, block_hours, thirds, thirds, z, at)
        steps = fits[3]
        if steps is None:
            nothing = np.zeros(n_s)
            return np.zeros(n_s, dtype=bool), nothing.astype(int), (nothing, nothing)

        def best(f: _Fits) -> np.ndarray:
            return np.where(f.ok & np.isfinite(f.bic), f.bic, np.inf).min(axis=0)[0]

        others = np.minimum.reduce([best(f) for i, f in enumerate(fits) if f and i != 3])
        k = np.argmin(np.where(steps.ok & np.isfinite(steps.bic), steps.bic, np.inf), axis=0)[0]
        mo = _Moments.of(blocks.wt, blocks.q, x)
        k_blocks = np.array(at)[k]
        w_new, q_new = mo.w[k_blocks, 0, cols], mo.wq[k_blocks, 0, cols]
        w_old, q_old = mo.w[-1, 0] - w_new, mo.wq[-1, 0] - q_new
        new, old = q_new / w_new, q_old / w_old
        clear = np.abs(new - old) > STEP_CLEAR * np.sqrt(steps.s2[k, 0, cols])
    return np.asarray((best(steps) < others) & clear), k_blocks, (new, old)
