"""The main job: base → SFT → reward model → every algorithm of the registry, each policy evaluated with
the simulated humans; writes metrics.json, samples.json, report.md and plots to the run folder.

    python -m minirlhf run [--fast] [--out DIR] [--seed N] [--algorithms ppo dpo rloo grpo bon ...] [--frontier]
                           [--jobs N]
"""
from __future__ import annotations

import time
from functools import partial

from ..best_of_n import BestOfN
from ..bias import stereotype_rate
from ..evaluate import head_to_head, kl_to_reference, perplexity, stage_metrics
from ..frontier import best_of_n_points, curve_points, fit_gao, plot_frontier
from ..sampling import sample_responses
from ..settings import Settings, get_settings
from . import cache
from .jobs import cpu_jobs, helpers
from .registry import ALIASES, FRONTIER_RUNS, STAGES, algorithms
from .report import save, write_report
from .stages import Pipeline


def run(setting: Settings | str | None = None, out_dir=None, seed: int | None = None, device=None,
        algorithm_names: list[str] | None = None, frontier: bool | None = None, jobs: int | None = None) -> dict:
    """Train (or load) every stage the main job needs, evaluate the policies, write the report; returns
    the metrics. `setting`: a name ("fast", "default", "gpu"), Settings, or None for the environment's.
    `frontier` (default: the setting's): also train the frontier's runs and plot it (notebook 09).
    `jobs` (default: jobs.cpu_jobs()): processes that train the stages (jobs.py); the results are the same."""
    settings = setting if isinstance(setting, Settings) else get_settings(setting, seed)
    algos = [ALIASES.get(a, a) for a in algorithm_names] if algorithm_names else algorithms()
    unknown = [a for a in algos if a not in algorithms()]
    if unknown:
        raise ValueError(f"unknown algorithms {unknown}; registered: {algorithms()} (and {ALIASES})")
    # sets the CPU threads (pipeline/threads.py); a damaged stage is rebuilt, with what depends on it (cache.py)
    pipe = Pipeline(settings, out_dir, device, repair=True)
    cache.remove_leftovers(pipe.out_dir)   # the temporary folders of killed runs
    jobs = cpu_jobs() if jobs is None else jobs
    print(f"[minirlhf] setting {settings.name!r}, seed {settings.seed}, device {pipe.device} "
          f"({pipe.threads} CPU thread{'s' * (pipe.threads > 1)}, {jobs} process{'es' * (jobs > 1)}), "
          f"output {pipe.out_dir}")
    start = time.time()
    with_frontier = settings.frontier if frontier is None else frontier
    frontier_algos = [a for a in algos if a in FRONTIER_RUNS] if with_frontier else []
    # the frontier's runs are trained here, so that their times are in timing_s and "this_run"
    frontier_runs = [name for a in frontier_algos for name in FRONTIER_RUNS[a]]
    names = list(dict.fromkeys(["base", "sft", "reward", *algos, *frontier_runs]))
    with helpers(settings, pipe.out_dir, device, names, jobs, pipe.rerun) as built_by_helpers:
        for name in names:
            pipe.stage_dir(name)
    models = {name: pipe.model(name) for name in ["base", "sft", *algos]}

    eval_start = time.time()
    ev, tok, reqs = settings.eval, pipe.tokenizer, pipe.requests("eval")

    def answers(name, m):   # best-of-n is a policy made of two models: it answers through its own sampler
        sample = m.sample_responses if isinstance(m, BestOfN) else partial(sample_responses, m)
        return sample(tok, reqs, ev.samples_per_prompt, ev.max_new_tokens, seed=settings.answer_seed(name))

    rows = {name: answers(name, m) for name, m in models.items()}   # each run its own stream: independent pairs
    stages = {name: stage_metrics(r) for name, r in rows.items()}
    stages["sft"]["vs_base"] = head_to_head(rows["sft"], rows["base"])
    stages["sft"]["win_rate_vs_base"] = stages["sft"]["vs_base"]["win_rate"]
    for a in algos:
        stages[a]["vs_sft"] = head_to_head(rows[a], rows["sft"])
        stages[a]["win_rate_vs_sft"] = stages[a]["vs_sft"]["win_rate"]
        if isinstance(models[a], BestOfN):   # exact for the empirical distribution of its pool (best_of_n.py)
            pool = pipe.log(a)["frontier"]
            kls = pool["kl"][pool["n"].index(models[a].config.n)]
            stages[a]["kl_to_sft"] = sum(kls) / len(kls)
        else:   # sampled with the setting's seed (not the evaluation's streams): as in every earlier release
            stages[a]["kl_to_sft"] = kl_to_reference(models[a], models["sft"], tok, reqs, ev.max_new_tokens,
                                                     settings.seed)
        hist = pipe.log(a).get("history")
        if hist and {"rm_score", "gold_score"} <= set(hist[0]):   # an RL run: where proxy and gold started and ended
            stages[a]["training"] = {"rm_score_first": hist[0]["rm_score"], "rm_score_last": hist[-1]["rm_score"],
                                     "gold_first": hist[0]["gold_score"], "gold_last": hist[-1]["gold_score"]}
    for name, m in models.items():   # the CrowS-Pairs-style probe (bias.py): a likelihood, so not for best-of-n
        if not isinstance(m, BestOfN):
            probe = stereotype_rate(m, tok)
            stages[name]["stereotype_rate"] = probe["rate"]
            stages[name]["stereotype_rate_95"] = [probe["low"], probe["high"]]
    heldout = pipe.heldout_internet_examples()
    rm_log = pipe.log("reward")
    used = pipe.used   # every stage this run built or loaded, upstream first
    metrics = {
        "setting": settings.name, "seed": settings.seed, "device": str(pipe.device), "threads": pipe.threads,
        "jobs": jobs,
        "n_params": pipe.log("base")["n_params"], "algorithms": algos,
        "stages": stages,
        "reward_model": {**{f"heldout_{k}": v for k, v in rm_log["heldout"].items()},
                         "train_accuracy_labelers": rm_log["train"]["accuracy_labelers"],
                         "rankings": rm_log["rankings"]},
        # best-of-n has no forward pass of its own (its next-token distribution is intractable): no perplexity
        "alignment_tax": {f"ppl_{name}": perplexity(m, heldout, tok.pad_token_id) for name, m in models.items()
                          if not isinstance(m, BestOfN)},
        # each stage's own training time, whenever it was trained; "built_this_run" says which were
        "timing_s": {**{name: pipe.log(name)["seconds"] for name in used}, "evaluation": time.time() - eval_start,
                     "this_run": time.time() - start},
        "built_this_run": pipe.built + built_by_helpers,
    }
    if frontier_algos:
        metrics["frontier"] = frontier_of(pipe, frontier_algos)
        save(pipe.out_dir / "frontier.png", lambda p: plot_frontier(metrics["frontier"], p))
    write_report(pipe.out_dir, metrics, rows, {name: pipe.log(name) for name in used},
                 {a: STAGES[a].title for a in algos})
    return metrics


def frontier_of(pipe, algos: list[str]) -> dict:
    """Each algorithm's points on the held-out prompts (registry.FRONTIER_RUNS: trained if they must be),
    and Gao et al.'s form fitted to its gold gain over its first point (SFT itself: step 0, or n = 1)."""
    kinds = [r.kind for r in pipe.requests("eval")]
    out = {}
    for a in algos:
        logs = {run: pipe.log(run) for run in FRONTIER_RUNS[a]}
        best_of_n = "frontier" in logs[FRONTIER_RUNS[a][0]]   # best-of-n's points: one per n, not per step
        runs = {run: best_of_n_points(log["frontier"], kinds) if best_of_n else curve_points(log["heldout_history"], kinds)
                for run, log in logs.items()}
        start = runs[FRONTIER_RUNS[a][0]]["gold"][0]
        kl = [k for p in runs.values() for k in p["kl"]]
        gain = [g - start for p in runs.values() for g in p["gold"]]
        out[a] = {"title": "best-of-n" if best_of_n else STAGES[a].title, "runs": runs, "start_gold": start,
                  "fit": fit_gao(kl, gain, "bon" if best_of_n else "rl")}
        if best_of_n:
            out[a]["kl_bound"] = logs[FRONTIER_RUNS[a][0]]["kl_bound"]
    return out
