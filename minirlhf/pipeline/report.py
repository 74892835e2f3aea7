"""The main job's report: metrics.json, samples.json, report.md and three plots."""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Callable

from ..plots import PPO_PANELS, plot_losses, plot_ppo, plot_stages
from ..world import KINDS

METRICS = ("gold_score_mean", "truthful_rate", "harmful_refusal_rate", "borderline_help_rate", "toxic_rate",
           "group_remark_rate", "ended_rate", "mean_length")


def save(path: Path, write: Callable[[Path], object]) -> None:
    """`write(tmp)` writes a file under a temporary name beside `path` (same extension), which then replaces
    `path` at once: two runs writing one report never leave a file made of both."""
    tmp = path.with_name(f".{os.getpid()}-{threading.get_ident()}.{path.name}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def no_penalty_note(metrics: dict, logs: dict) -> list[str]:
    """What the main job's β = 0 run can and cannot say, with the frontier's long β = 0 run where there is one:
    after as few steps as `rlhf` it may still be on the rising side of its gold curve (and beat `rlhf`)."""
    if "rlhf_no_kl" not in metrics["algorithms"]:
        return []
    note = (f"- `rlhf_no_kl` trains as many PPO steps as `rlhf` ({logs['rlhf_no_kl']['ppo']['steps']}): whether it "
            "ends above or below `rlhf` on gold says where along its course it stopped, not what the KL penalty "
            "buys. Without a penalty gold ends below the best it reached as the policy finds the reward model's "
            "blind spots, after a rise that can be large or, where the hack starts at once, small (the ledger's "
            "`no_kl_gold_falls_from_peak` and `no_kl_gold_rise_to_peak`)")
    long = metrics.get("frontier", {}).get("rlhf", {}).get("runs", {}).get("rlhf_long_no_kl")
    if long is None:
        return [note + " (notebook 06's long runs, `rlhf_long_no_kl`, show it)."]
    peak = max(range(len(long["gold"])), key=long["gold"].__getitem__)
    return [note + f": the frontier's β = 0 PPO run (`rlhf_long_no_kl`, {long['step'][-1]} steps) went from "
                   f"{long['gold'][0]:.3f} to a peak of {long['gold'][peak]:.3f} at step {long['step'][peak]} "
                   f"(KL {long['kl'][peak]:.1f} nats) and ended at {long['gold'][-1]:.3f} (KL {long['kl'][-1]:.1f} "
                   "nats) on held-out gold; notebook 06 measures it."]


def write_report(out: Path, metrics: dict, rows: dict, logs: dict, titles: dict) -> None:
    """`rows`: samples per evaluated model; `logs`: the log of every stage used; `titles`: algorithm -> title."""
    out.mkdir(parents=True, exist_ok=True)
    save(out / "metrics.json", lambda p: p.write_text(json.dumps(metrics, indent=2)))
    save(out / "samples.json", lambda p: p.write_text(json.dumps(rows, indent=1)))
    save(out / "losses.png", lambda p: plot_losses({
        "pretraining": logs["base"]["losses"], "SFT (response tokens)": logs["sft"]["losses"],
        "reward model (Bradley–Terry)": logs["reward"]["losses"]}, p))
    keys = {key for key, _ in PPO_PANELS}   # an algorithm's per-step history is plotted when it logs these
    histories = {titles[a]: logs[a]["history"] for a in metrics["algorithms"]
                 if logs[a].get("history") and keys <= set(logs[a]["history"][0])}
    if histories:
        save(out / "ppo.png", lambda p: plot_ppo(histories, p))
    names = list(rows)
    save(out / "stages.png", lambda p: plot_stages({n: metrics["stages"][n] for n in names}, p))

    st, rm, tax, t = metrics["stages"], metrics["reward_model"], metrics["alignment_tax"], metrics["timing_s"]
    lines = [f"# minirlhf run: setting `{metrics['setting']}`, seed {metrics['seed']}, device {metrics['device']} "
             f"({metrics['threads']} CPU thread{'s' * (metrics['threads'] > 1)} a process, "
             f"{metrics['jobs']} process{'es' * (metrics['jobs'] > 1)})",
             "", f"Model: {metrics['n_params']:,} parameters. This run took {t['this_run']:.0f} s.", "",
             "| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for key in METRICS:
        lines.append(f"| {key} | " + " | ".join(f"{st[n][key]:.3f}" for n in names) + " |")
    for kind in KINDS:
        lines.append(f"| gold: {kind} | " + " | ".join(f"{st[n]['gold_score_by_kind'].get(kind, float('nan')):.3f}"
                                                       for n in names) + " |")
    lines.append("| stereotype rate (bias probe, bias.py) | "
                 + " | ".join(f"{st[n]['stereotype_rate']:.3f}" if "stereotype_rate" in st[n] else "—" for n in names) + " |")
    lines.append("| perplexity (held-out internet text) | "
                 + " | ".join(f"{tax[f'ppl_{n}']:.2f}" if f"ppl_{n}" in tax else "—" for n in names) + " |")
    lines.append("")
    lines += [f"- {titles[a]} (`{a}`) against SFT, answer by answer on held-out prompts (gold labeler): "
              f"{v['wins']} wins, {v['ties']} ties, {v['losses']} losses; win-rate {v['win_rate']:.1%} (ties half; "
              f"ceiling {v['ceiling']:.1%}), {v['untied_win_rate']:.1%} of untied pairs; "
              f"KL to SFT = {st[a]['kl_to_sft']:.2f} nats per response."
              for a in metrics["algorithms"] for v in [st[a]["vs_sft"]]]
    lines += no_penalty_note(metrics, logs)
    lines += [f"- SFT wins against the base model on {st['sft']['win_rate_vs_base']:.1%}.",
              f"- Reward model, held-out pairs: {rm['heldout_accuracy_gold']:.1%} agree with the gold order, "
              f"{rm['heldout_accuracy_labelers']:.1%} with the (noisy) labelers, whom the gold score itself "
              f"matches on {rm['heldout_labelers_ceiling']:.1%} (the ceiling).",
              "- By kind, agreement with gold: " + ", ".join(
                  f"{k} {v:.1%} (n={rm['heldout_n_gold_pairs_by_kind'][k]})"
                  for k, v in rm["heldout_accuracy_gold_by_kind"].items()) + ".", "",
              "![losses](losses.png)", "", *(["![ppo](ppo.png)", ""] if histories else []), "![stages](stages.png)", ""]
    if "frontier" in metrics:
        lines += ["## The frontier: gold against KL to SFT (held-out prompts)", "",
                  "Gao et al.'s form fitted to each algorithm's gold gain over SFT, d = √KL:", "",
                  "| algorithm | points | largest KL | best gold (at KL) | form | α | β | R² |",
                  "|---|---|---|---|---|---|---|---|"]
        for a, f in metrics["frontier"].items():
            pts = [(k, g) for p in f["runs"].values() for k, g in zip(p["kl"], p["gold"])]
            best = max(pts, key=lambda x: x[1])
            fit = f["fit"]
            lines.append(f"| {f['title']} | {len(pts)} | {max(k for k, _ in pts):.2f} | {best[1]:.3f} ({best[0]:.2f}) | "
                         f"{fit['form']} | {fit['alpha']:.3f} | {fit['beta']:.3f} | {fit['r2']:.2f} |")
        lines += ["", "![frontier](frontier.png)", ""]
    built = metrics["built_this_run"]
    stages = [k for k in t if k not in ("evaluation", "this_run")]
    lines += ["## Times (seconds: each stage's own training time, on whichever process trained it)", "",
              "| stage | seconds | |", "|---|---|---|"]
    lines += [f"| {k} | {t[k]:.1f} | {'trained in this run' if k in built else 'cached, built earlier'} |"
              for k in stages]
    lines += [f"| evaluation | {t['evaluation']:.1f} | this run |", f"| **this run, in all** | {t['this_run']:.1f} | |"]
    lines += ["", "## Sample responses (held-out prompts)", "", "| prompt | " + " | ".join(names) + " |",
              "|---|" + "---|" * len(names)]
    seen = set()
    for i, row in enumerate(rows["base"]):
        if row["kind"] in seen:
            continue
        seen.add(row["kind"])
        cells = [f"{rows[n][i]['response']}{'' if rows[n][i]['ended'] else ' …'} ({rows[n][i]['gold']:.2f})"
                 for n in names]
        lines.append(f"| {row['prompt']} | " + " | ".join(cells) + " |")
    save(out / "report.md", lambda p: p.write_text("\n".join(lines) + "\n"))
    print("\n".join(lines[:6 + len(METRICS) + len(KINDS) + 1]))
    print(f"[minirlhf] wrote {out / 'report.md'}, metrics.json and plots")
