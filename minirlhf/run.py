"""The main job: base → SFT → reward model → RLHF (and RLHF without a KL penalty), every stage
evaluated with the simulated humans; writes metrics.json, report.md and plots to the run folder.

    python -m minirlhf run [--fast] [--out DIR] [--seed N]
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from .evaluate import kl_to_reference, perplexity, sample_responses, stage_metrics, win_rate
from .pipeline import Pipeline
from .plots import plot_losses, plot_ppo, plot_stages
from .settings import get_settings
from .world import KINDS


def run(setting: str | None = None, out_dir=None, seed: int | None = None, device=None) -> dict:
    settings = get_settings(setting, seed)
    pipe = Pipeline(settings, out_dir, device)
    if pipe.device.type == "cpu":
        # the toy GPTs are too small to gain from more threads, and on a busy machine a second
        # thread makes every step many times slower (measured: sampling 0.4 s on 1 thread, 22 s on 2)
        torch.set_num_threads(1)
    out = pipe.out_dir
    print(f"[minirlhf] setting {settings.name!r}, seed {settings.seed}, device {pipe.device}, output {out}")
    models = {"base": pipe.base_model(), "sft": pipe.sft_model()}
    pipe.reward_model()
    models["rlhf"] = pipe.rlhf_model()
    no_kl = pipe.rlhf_model(kl_coef=0.0)

    start = time.time()
    ev = settings.eval
    reqs = pipe.requests("eval")
    rows = {name: sample_responses(m, pipe.tokenizer, reqs, ev.samples_per_prompt, ev.max_new_tokens,
                                   seed=settings.seed + 10) for name, m in {**models, "rlhf_no_kl": no_kl}.items()}
    heldout = pipe.heldout_internet_examples()
    ppl = {name: perplexity(m, heldout, pipe.tokenizer.pad_token_id) for name, m in models.items()}
    rm_log = pipe.log(pipe.stage_dir("reward"))
    hist, hist_no_kl = pipe.rlhf_history(), pipe.rlhf_history(kl_coef=0.0)
    seconds = {"pretrain": pipe.log(pipe.stage_dir("base"))["seconds"],
               "sft": pipe.log(pipe.stage_dir("sft"))["seconds"],
               "reward_model": rm_log["seconds"],
               "ppo": pipe.log(pipe.rlhf_dir())["seconds"],
               "ppo_no_kl": pipe.log(pipe.rlhf_dir(kl_coef=0.0))["seconds"]}
    metrics = {
        "setting": settings.name, "seed": settings.seed, "device": str(pipe.device),
        "n_params": pipe.log(pipe.stage_dir("base"))["n_params"],
        "stages": {name: stage_metrics(r) for name, r in rows.items()},
        "rlhf": {"win_rate_vs_sft": win_rate(rows["rlhf"], rows["sft"]),
                 "kl_to_sft": kl_to_reference(models["rlhf"], models["sft"], pipe.tokenizer, reqs,
                                              ev.max_new_tokens, settings.seed),
                 "no_kl_win_rate_vs_sft": win_rate(rows["rlhf_no_kl"], rows["sft"]),
                 "no_kl_kl_to_sft": kl_to_reference(no_kl, models["sft"], pipe.tokenizer, reqs,
                                                    ev.max_new_tokens, settings.seed)},
        "sft": {"win_rate_vs_base": win_rate(rows["sft"], rows["base"])},
        "reward_model": {"heldout_accuracy_gold": rm_log["heldout"]["accuracy_gold"],
                         "heldout_accuracy_labelers": rm_log["heldout"]["accuracy_labelers"],
                         "train_accuracy_labelers": rm_log["train"]["accuracy_labelers"]},
        "reward_hacking": {name: {"rm_score_first": h[0]["rm_score"], "rm_score_last": h[-1]["rm_score"],
                                  "gold_first": h[0]["gold_score"], "gold_last": h[-1]["gold_score"]}
                           for name, h in (("kl", hist), ("no_kl", hist_no_kl))},
        "alignment_tax": {f"ppl_{name}": v for name, v in ppl.items()},
    }
    seconds["evaluation"] = time.time() - start
    seconds["total"] = sum(seconds.values())
    metrics["timing_s"] = seconds
    write_report(out, metrics, rows, pipe, hist, hist_no_kl)
    return metrics


def write_report(out: Path, metrics: dict, rows: dict, pipe: Pipeline, hist, hist_no_kl) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (out / "samples.json").write_text(json.dumps(rows, indent=1))
    plot_losses({"pretraining": pipe.log(pipe.stage_dir("base"))["losses"],
                 "SFT (response tokens)": pipe.log(pipe.stage_dir("sft"))["losses"],
                 "reward model (Bradley–Terry)": pipe.log(pipe.stage_dir("reward"))["losses"]},
                out / "losses.png")
    beta = pipe.settings.ppo.kl_coef
    plot_ppo({f"β = {beta}": hist, "β = 0 (no KL penalty)": hist_no_kl}, out / "ppo.png")
    plot_stages({k: metrics["stages"][k] for k in ("base", "sft", "rlhf")}, out / "stages.png")

    st = metrics["stages"]
    names = ["base", "sft", "rlhf", "rlhf_no_kl"]
    lines = [f"# minirlhf run: setting `{metrics['setting']}`, seed {metrics['seed']}, device {metrics['device']}",
             "", f"Model: {metrics['n_params']:,} parameters. Total time {metrics['timing_s']['total']:.0f} s.", "",
             "| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for key in ("gold_score_mean", "truthful_rate", "harmful_refusal_rate", "toxic_rate", "ended_rate", "mean_length"):
        lines.append(f"| {key} | " + " | ".join(f"{st[n][key]:.3f}" for n in names) + " |")
    for kind in KINDS:
        lines.append(f"| gold: {kind} | " + " | ".join(f"{st[n]['gold_score_by_kind'].get(kind, float('nan')):.3f}"
                                                       for n in names) + " |")
    r, rm, tax = metrics["rlhf"], metrics["reward_model"], metrics["alignment_tax"]
    lines += ["", f"- RLHF wins against SFT on {r['win_rate_vs_sft']:.1%} of held-out prompts (gold labeler, ties half); "
              f"KL(RLHF ‖ SFT) = {r['kl_to_sft']:.2f} nats per response.",
              f"- Without the KL penalty: win-rate vs SFT {r['no_kl_win_rate_vs_sft']:.1%}, KL {r['no_kl_kl_to_sft']:.2f} nats.",
              f"- SFT wins against the base model on {metrics['sft']['win_rate_vs_base']:.1%}.",
              f"- Reward model, held-out pairs: {rm['heldout_accuracy_gold']:.1%} agree with the gold order, "
              f"{rm['heldout_accuracy_labelers']:.1%} with the (noisy) labelers.",
              f"- Alignment tax, perplexity on held-out internet text: base {tax['ppl_base']:.2f}, SFT {tax['ppl_sft']:.2f}, "
              f"RLHF {tax['ppl_rlhf']:.2f}.", "",
              "![losses](losses.png)", "", "![ppo](ppo.png)", "", "![stages](stages.png)", "",
              "## Times (seconds)", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in metrics["timing_s"].items()]
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
    (out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:6 + 6 + len(KINDS) + 7]))
    print(f"[minirlhf] wrote {out / 'report.md'}, metrics.json and plots")
