"""Plots shared by the report and the notebooks (matplotlib, labelled axes, nothing hidden)."""
from __future__ import annotations

import matplotlib.pyplot as plt


def smooth(values: list[float], window: int = 20) -> list[float]:
    """Trailing moving average, so noisy per-step losses read as curves."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v - (values[i - window] if i >= window else 0.0)
        out.append(total / min(i + 1, window))
    return out


def plot_losses(curves: dict[str, list[float]], path=None):
    """One panel per training stage: loss against step."""
    fig, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 3.2), squeeze=False)
    for ax, (name, losses) in zip(axes[0], curves.items()):
        ax.plot(losses, alpha=0.3, color="C0")
        ax.plot(smooth(losses), color="C0")
        ax.set(title=name, xlabel="step", ylabel="loss")
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=110)
    return fig


PPO_PANELS = [("rm_score", "reward-model score (normalised)"), ("gold_score", "gold score (simulated humans)"),
              ("kl", "KL(π‖π_ref) per response (nats)"), ("response_len", "response length (tokens)")]


def plot_ppo(histories: dict[str, list[dict]], path=None, panels=PPO_PANELS, colors: dict | None = None):
    """PPO runs side by side: proxy reward, gold score, KL and length against the PPO step.

    `colors` maps a run's name to its colour, so that a run keeps its colour across plots.
    """
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.2), squeeze=False)
    for ax, (key, label) in zip(axes[0], panels):
        for i, (name, hist) in enumerate(histories.items()):
            ys, color = [h[key] for h in hist], (colors or {}).get(name, f"C{i}")
            ax.plot(ys, alpha=0.25, color=color)
            ax.plot(smooth(ys, 5), color=color, label=name)
        ax.set(xlabel="PPO step", ylabel=label)
    axes[0][0].legend()
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=110)
    return fig


def plot_stages(stage_metrics: dict[str, dict], path=None,
                keys=("gold_score_mean", "truthful_rate", "harmful_refusal_rate", "toxic_rate")):
    """Grouped bars: one group per metric, one bar per stage (base, SFT, RLHF...)."""
    fig, ax = plt.subplots(figsize=(8, 3.4))
    width = 0.8 / len(stage_metrics)
    for i, (stage, m) in enumerate(stage_metrics.items()):
        xs = [j + i * width for j in range(len(keys))]
        ax.bar(xs, [m[k] for k in keys], width, label=stage)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(keys))], [k.replace("_", " ") for k in keys])
    ax.set(xlabel="metric (held-out prompts, gold labeler)", ylabel="share / score", ylim=(0, 1.05))
    ax.legend()
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=110)
    return fig
