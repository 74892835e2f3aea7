"""The gold-versus-KL frontier: what each algorithm buys, in gold and in reward-model score, per nat of KL.

Every point is measured on the held-out prompts, its KL(π ‖ π_SFT) by the same k1 estimate on sampled
answers (heldout.py) — except best-of-n's, exact for the empirical distribution of its pool (best_of_n.py):
    PPO, RLOO,   along training: its own run (β fixed) and a long run with β = 0, at their checkpoints
    GRPO
    DPO          across β: each β's run at its checkpoints
    best-of-n    across n
Gao et al. (2022) describe the gold gain over the start, R(d) with d = √KL, by two forms:
    best-of-n    R(d) = d (α − β d)
    RL           R(d) = d (α − β log d)
fitted here by least squares in (α, β) (both forms are linear in them), with R² to say how well.
"""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np


def kind_mean(values, kinds) -> float:
    """The headline mean of per-answer values (each request kind weighs the same, as evaluate.stage_metrics);
    `kinds` has one entry per prompt, and each prompt's answers are together in `values`."""
    v = np.asarray(values, float).reshape(len(kinds), -1).mean(1)
    k = np.asarray(kinds)
    return float(np.mean([v[k == kind].mean() for kind in np.unique(k)]))


def curve_points(heldout_history: list[dict], kinds) -> dict:
    """One run's checkpoints (heldout.HeldoutCurve) as points: step, KL (mean over answers), gold and reward
    (headline means: each request kind weighs the same)."""
    return {"step": [h["step"] for h in heldout_history],
            "kl": [float(np.mean(h["kl"])) for h in heldout_history],
            "gold": [kind_mean(h["gold"], kinds) for h in heldout_history],
            "reward": [kind_mean(h["reward"], kinds) for h in heldout_history]}


def best_of_n_points(frontier: dict, kinds) -> dict:
    """The "bon" stage's exact frontier (best_of_n.pool_frontier) as points, one per n, averaged as curve_points."""
    return {"n": frontier["n"], "kl": [float(np.mean(k)) for k in frontier["kl"]],
            "gold": [kind_mean(g, kinds) for g in frontier["gold"]],
            "reward": [kind_mean(r, kinds) for r in frontier["reward"]]}


def fit_gao(kl, gain, form: str) -> dict:
    """Least-squares α, β of R(d) = d(α − βd) ("bon") or d(α − β log d) ("rl"), d = √KL, and R².
    Points at KL ≤ 0 (the start, where both forms give 0; a negative k1 estimate is noise) are left out."""
    kl, gain = np.asarray(kl, float), np.asarray(gain, float)
    keep = kl > 1e-6
    d, y = np.sqrt(kl[keep]), gain[keep]
    second = d * d if form == "bon" else d * np.log(d)
    X = np.stack([d, -second], 1)                        # R = α·d − β·(d² or d log d)
    (alpha, beta), *_ = np.linalg.lstsq(X, y, rcond=None)
    residual, total = ((y - X @ [alpha, beta]) ** 2).sum(), ((y - y.mean()) ** 2).sum()
    return {"alpha": float(alpha), "beta": float(beta), "r2": float(1 - residual / total) if total > 0 else math.nan,
            "n_points": int(keep.sum()), "form": "d(α − βd)" if form == "bon" else "d(α − β log d)"}


def plot_frontier(frontier: dict, path=None):
    """Gold (left) and reward-model score (right) against KL to SFT: one colour per algorithm, a line per run,
    the fitted form dashed; best-of-n's analytic KL bound log n − (n−1)/n drawn as open markers."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for i, (name, algo) in enumerate(frontier.items()):
        color = f"C{i}"
        for j, (run, pts) in enumerate(algo["runs"].items()):
            for ax, key in zip(axes, ("gold", "reward")):
                ax.plot(pts["kl"], pts[key], "o-", color=color, alpha=1.0 if j == 0 else 0.55, ms=3,
                        label=algo["title"] if j == 0 else None)
        fit = algo["fit"]
        if fit["n_points"] >= 2 and algo["start_gold"] is not None:
            d = np.linspace(1e-3, math.sqrt(max(max(p["kl"]) for p in algo["runs"].values())), 100)
            second = d * d if fit["form"].startswith("d(α − βd)") else d * np.log(d)
            axes[0].plot(d ** 2, algo["start_gold"] + fit["alpha"] * d - fit["beta"] * second, "--", color=color,
                         alpha=0.6)
        if "kl_bound" in algo:
            axes[0].plot(algo["kl_bound"], algo["runs"][next(iter(algo["runs"]))]["gold"], "o", mfc="none",
                         color=color, ms=5, label=f"{algo['title']} at log n − (n−1)/n")
    axes[0].set(xlabel="KL(π ‖ π_SFT), nats per answer", ylabel="gold score (simulated humans)", xscale="symlog")
    axes[1].set(xlabel="KL(π ‖ π_SFT), nats per answer", ylabel="reward-model score", xscale="symlog")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=110)
    return fig
