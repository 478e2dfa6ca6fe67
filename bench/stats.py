"""Statistics across identities, as the leaderboard reports them.

Input: a pandas DataFrame of records with columns identity, defense, metric, value
(more columns - attack, purifier, seed - may be named in `by`). The unit of
replication is the identity: values are first averaged per identity (over seeds or
repeated rows), then
- mean +- std (sample std, ddof=1) and a seeded percentile-bootstrap 95% CI of the
  mean across identities;
- a paired Wilcoxon signed-rank test of each defense against the undefended
  baseline on the identities both have (DiffShortcut, "Investigating and Defending
  Shortcut Learning in Personalized Diffusion Models", Table 1: "significant
  improvement that passes the Wilcoxon signed-rank significance test with p <= 0.01").
Pure functions: no I/O, no global state; rows whose value is None/NaN (unavailable or
undefined metrics) are dropped before anything is computed.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps


def unit(v: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (a zero row stays zero): embeddings before cosine similarity."""
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.where(n == 0, 1, n)


REQUIRED = ("identity", "defense", "metric", "value")


def _clean(df: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    missing = [c for c in (*REQUIRED, *by) if c not in df.columns]
    if missing:
        raise ValueError(f"records lack column(s) {missing}; need {list(REQUIRED)} and {list(by)}")
    out = df.copy()
    out["value"] = pd.to_numeric(out["value"], errors="coerce")
    return out[np.isfinite(out["value"].to_numpy(dtype=float))]


def per_identity(df: pd.DataFrame, by: Sequence[str] = ("defense", "metric")) -> pd.DataFrame:
    """One row per (by..., identity): the mean of that identity's values, and how many."""
    by = list(by)
    clean = _clean(df, by)
    g = clean.groupby([*by, "identity"], sort=True)["value"]
    return g.agg(value="mean", n_rows="size").reset_index()


def bootstrap_ci(
    values: Sequence[float], n_boot: int = 10000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean (resampling identities with replacement)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return (float("nan"), float("nan"))
    if x.size == 1:
        return (float(x[0]), float(x[0]))
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def summarize(
    df: pd.DataFrame,
    by: Sequence[str] = ("defense", "metric"),
    n_boot: int = 10000,
    level: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Per group: n identities, mean, std (ddof=1), bootstrap CI [ci_low, ci_high]."""
    by = list(by)
    ident = per_identity(df, by)
    rows = []
    for key, grp in ident.groupby(by, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        v = grp["value"].to_numpy(dtype=float)
        lo, hi = bootstrap_ci(v, n_boot=n_boot, level=level, seed=seed)
        rows.append(
            {
                **dict(zip(by, key)),
                "n_identities": int(v.size),
                "mean": float(v.mean()),
                "std": float(v.std(ddof=1)) if v.size > 1 else float("nan"),
                "ci_low": lo,
                "ci_high": hi,
            }
        )
    return pd.DataFrame(rows, columns=[*by, "n_identities", "mean", "std", "ci_low", "ci_high"])


def wilcoxon_vs_baseline(
    df: pd.DataFrame,
    baseline: str = "none",
    condition: str = "defense",
    by: Sequence[str] = ("metric",),
    alternative: str = "two-sided",
) -> pd.DataFrame:
    """Paired Wilcoxon signed-rank (scipy.stats.wilcoxon) of every `condition` value
    against `baseline`, per group of `by`, on identities present in both.

    diff = condition - baseline per identity; `median_diff` gives the direction (read
    it with the metric's higher_is_better). p is NaN when fewer than 1 pair or all
    differences are zero (the test is undefined)."""
    by = list(by)
    ident = per_identity(df, [*by, condition])
    rows = []
    for key, grp in ident.groupby(by, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        wide = grp.pivot(index="identity", columns=condition, values="value")
        if baseline not in wide.columns:
            continue
        for cond in wide.columns:
            if cond == baseline:
                continue
            pair = wide[[baseline, cond]].dropna()
            d = (pair[cond] - pair[baseline]).to_numpy(dtype=float)
            stat = p = float("nan")
            if d.size >= 1 and np.any(d != 0):
                res = sps.wilcoxon(pair[cond].to_numpy(float), pair[baseline].to_numpy(float), alternative=alternative)
                stat, p = float(res.statistic), float(res.pvalue)
            rows.append(
                {
                    **dict(zip(by, key)),
                    condition: cond,
                    "baseline": baseline,
                    "n_pairs": int(d.size),
                    "median_diff": float(np.median(d)) if d.size else float("nan"),
                    "statistic": stat,
                    "p_value": p,
                }
            )
    cols = [*by, condition, "baseline", "n_pairs", "median_diff", "statistic", "p_value"]
    return pd.DataFrame(rows, columns=cols)


def paired_comparison(values: Sequence[float | None], companions: dict[str, Sequence[float | None]],
                      higher_is_better: bool | None, n_boot: int = 10000, seed: int = 0) -> dict:
    """One metric of one defense over identities, beside each companion (baseline, noise) of
    the same identities: mean and bootstrap CI of both, the protection (companion - defense
    for a higher-is-better metric, the reverse otherwise: > 0 hurts the attacker) with its CI,
    and the two-sided paired Wilcoxon signed-rank p. Identities where either value is
    undefined are left out of that pair and counted in `n_dropped`, never averaged over."""
    x = np.asarray([np.nan if v is None else v for v in values], dtype=float)
    out: dict = {"n": int(np.isfinite(x).sum()), "mean": float(np.nanmean(x)) if np.isfinite(x).any() else float("nan")}
    out["ci"] = bootstrap_ci(x[np.isfinite(x)], n_boot=n_boot, seed=seed)
    for role, comp in companions.items():
        y = np.asarray([np.nan if v is None else v for v in comp], dtype=float)
        ok = np.isfinite(x) & np.isfinite(y)
        d = (y[ok] - x[ok]) if higher_is_better else (x[ok] - y[ok])
        p = float("nan")
        if d.size >= 1 and np.any(d != 0) and higher_is_better is not None:
            p = float(sps.wilcoxon(d).pvalue)
        out[role] = {
            "n_pairs": int(ok.sum()), "n_dropped": int(len(x) - ok.sum()),
            "mean": float(np.mean(y[ok])) if ok.any() else float("nan"),
            "protection": float(np.mean(d)) if d.size else float("nan"),
            "protection_ci": bootstrap_ci(d, n_boot=n_boot, seed=seed), "p_value": p,
        }
    return out


# ------------------------------------------------------------- Frechet distance (FID)
# Why the care: with the few images of a cell the covariances are rank-deficient and sqrtm(S1 S2)
# of a singular product is ill-conditioned; the symmetric form tr sqrt(S1^1/2 S2 S1^1/2) with eigh
# in float64 is exact for PSD matrices (metrics/fid.py, leaderboard pooled FID).
def _sqrt_psd(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((m + m.T) / 2.0)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^1/2), in float64.

    tr((S1 S2)^1/2) = sum sqrt(eig(S1^1/2 S2 S1^1/2)): the inner matrix is symmetric
    PSD, so eigh is stable even when S1, S2 are singular (few samples), where
    scipy.linalg.sqrtm(S1 @ S2) returns complex noise."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(f"shape mismatch: mu {mu1.shape} {mu2.shape}, sigma {s1.shape} {s2.shape}")
    r1 = _sqrt_psd(s1)
    inner = r1 @ s2 @ r1
    tr_covmean = float(np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((inner + inner.T) / 2.0), 0.0, None))))
    diff = mu1 - mu2
    value = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)
    return max(value, 0.0)  # exact arithmetic gives >= 0; clip round-off below zero


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance (ddof=1, as torchmetrics and pytorch-fid) of (n, d) features."""
    f = np.asarray(features, np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"need an (n >= 2, d) feature array, got {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False, ddof=1).reshape(f.shape[1], f.shape[1])


def fid_from_features(gen: np.ndarray, ref: np.ndarray) -> float:
    return frechet_distance(*gaussian_stats(gen), *gaussian_stats(ref))
