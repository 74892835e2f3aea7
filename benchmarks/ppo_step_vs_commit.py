"""Benchmark: one PPO step of this checkout against the same step at an earlier commit. Prints a table.

    python benchmarks/ppo_step_vs_commit.py [--base 9fbc30e] [--setting default] [--steps 10] [--threads 1]
                                            [--models trained|fresh]

Both versions get identical work: the same PPOConfig and model size (the setting's), the same
vocabulary and prompts (this checkout's world), and the same models: by default the setting's seed-0
SFT model (policy and reference) and reward model (the value model starts from it), from this
checkout's stage cache (trained first if missing: for the default setting about 30 min on one core),
so that the responses end as a real run's do and are as ragged; with `--models fresh`, models
initialised from one seed, whose responses rarely end. Every timed step starts from those same models.
The base commit is checked out into a temporary git worktree, each version runs in a process of its
own, and the two take turns step by step (base, this, base, this, ...), so that a machine getting
busier or quieter hits both alike. The first 3 steps' logs must agree (|Δ| ≤ 1e-5 on every quantity both versions log, gold scores aside: the labeler
is allowed to change): a speed-up that changes the maths is not a speed-up.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HISTORY_STEPS, TOLERANCE = 3, 1e-5


def worker(args) -> None:
    """Run in a fresh process with PYTHONPATH set to the tree under test: time PPO steps."""
    import time
    from dataclasses import asdict, fields, replace

    import torch

    from minirlhf.model import GPT
    from minirlhf.reward import RewardModel
    from minirlhf.rlhf import train_ppo, value_model_from_reward_model
    from minirlhf.settings import get_settings
    from minirlhf.tokenizer import build_tokenizer
    from minirlhf.world import Request

    torch.set_num_threads(args.threads)
    work = json.loads(Path(args.work).read_text())
    s = get_settings(args.setting)
    tok = build_tokenizer(work["words"])
    requests = [Request(kind, prompt, answer, subject, tuple(numbers))
                for kind, prompt, answer, subject, numbers in work["requests"]]

    weights = None
    if work.get("weights"):
        from safetensors.torch import load_file
        weights = load_file(work["weights"])
        s = replace(s, model=replace(s.model, **work["model"]))

    def models():
        torch.manual_seed(0)
        policy = GPT(replace(s.model, vocab_size=len(tok)) if weights is None else s.model)
        ref = GPT(policy.config)
        rm = RewardModel.from_language_model(policy) if weights is None else RewardModel(policy.config)
        if weights is not None:
            for model, name in ((policy, "sft"), (rm, "reward")):   # the reference: a copy of the policy, below
                model.load_state_dict({k.split(".", 1)[1]: v for k, v in weights.items()
                                       if k.startswith(name + ".")})
        ref.load_state_dict(policy.state_dict())
        return policy, ref, rm, value_model_from_reward_model(rm)

    # the learning rates as the base commit has them: constant (a 3-step run would anneal them at once)
    still = {"anneal_lr": False} if "anneal_lr" in {f.name for f in fields(s.ppo)} else {}
    history = train_ppo(*models(), tok, requests, replace(s.ppo, steps=HISTORY_STEPS, **still), desc="history")
    print(json.dumps({"history": history, "ppo": asdict(s.ppo), "model": asdict(s.model),
                      "torch": torch.__version__}), flush=True)
    for line in sys.stdin:   # one timed PPO step per request, from the same fresh models: the same work each time
        ms = models()
        start = time.perf_counter()
        train_ppo(*ms, tok, requests, replace(s.ppo, steps=1), desc="timed")
        print(time.perf_counter() - start, flush=True)


def start_worker(tree: Path, args, work: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(tree), "TQDM_DISABLE": "1"}
    cmd = [sys.executable, __file__, "--worker", "--work", str(work), "--setting", args.setting,
           "--threads", str(args.threads)]
    return subprocess.Popen(cmd, env=env, cwd=tree, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def ask(worker: subprocess.Popen) -> str:
    line = worker.stdout.readline()
    if not line:
        sys.exit(f"a benchmark worker stopped (exit code {worker.wait()}); its error is above")
    return line


def trained_models(setting: str, tmp: Path) -> dict:
    """The setting's seed-0 SFT and reward models from this checkout's stage cache, as one safetensors file."""
    from dataclasses import asdict

    from safetensors.torch import save_file

    from minirlhf.pipeline import arguments
    from minirlhf.pipeline.stages import Pipeline
    settings, home = arguments.resolve(argparse.ArgumentParser(), setting, 0, None)
    pipe = Pipeline(settings, home, None)
    sft, rm = pipe.model("sft"), pipe.model("reward")
    weights = {f"{name}.{k}": v.detach().clone().contiguous()          # clones: tied weights may not share
               for name, model in (("sft", sft), ("reward", rm)) for k, v in model.state_dict().items()}
    save_file(weights, tmp / "weights.safetensors")
    return {"weights": str(tmp / "weights.safetensors"), "model": asdict(sft.config)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="9fbc30e", help="the commit to compare against (default: 9fbc30e)")
    parser.add_argument("--setting", default="default")
    parser.add_argument("--steps", type=int, default=10, help="PPO steps timed per version, alternating")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", choices=("trained", "fresh"), default="trained",
                        help="the setting's seed-0 SFT and reward models (default), or freshly initialised ones")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    from minirlhf.settings import get_settings
    from minirlhf.world import World, vocabulary
    world = World(get_settings(args.setting).world)
    # the kinds every version of the world knows, so the base commit's labeler can judge them
    requests = [[r.kind, r.prompt, r.answer, r.subject, list(r.numbers)] for r in world.requests["rl"]
                if r.kind in ("fact", "arithmetic", "nonexistent", "harmful", "greeting", "instruction")]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base_tree = tmp / "base"
        try:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet", str(base_tree),
                            args.base], check=True)
        except subprocess.CalledProcessError:
            sys.exit(f"could not check out {args.base!r} into a git worktree: is it a commit of this repository?")
        try:
            work = tmp / "work.json"
            work.write_text(json.dumps({"words": vocabulary(), "requests": requests,
                                        **(trained_models(args.setting, tmp) if args.models == "trained" else {})}))
            workers = {"base": start_worker(base_tree, args, work), "this": start_worker(ROOT, args, work)}
            results = {name: json.loads(ask(w)) for name, w in workers.items()}   # the first steps' logs
            times = {name: [] for name in workers}
            for r in range(args.steps + 1):   # step by step, alternating; the first of each is a warm-up
                for name, w in workers.items():
                    w.stdin.write("step\n")
                    w.stdin.flush()
                    seconds = float(ask(w))
                    if r:
                        times[name].append(seconds)
                print(f"step {r}{' (warm-up)' if not r else ''}: " + ", ".join(
                    f"{name} {t[-1] if r else seconds:.3f} s" for name, t in times.items()), flush=True)
            for w in workers.values():
                w.stdin.close()
                w.wait()
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base_tree)], check=False)

    base, this = results["base"], results["this"]
    common = base["ppo"].keys() & this["ppo"].keys()   # a field added later (e.g. ptx_docs) is not in both
    if any(base["ppo"][k] != this["ppo"][k] for k in common) or base["model"] != this["model"]:
        sys.exit(f"the two versions' settings differ, so their steps are not the same work:\n"
                 f"  base: {base['ppo']} {base['model']}\n  this: {this['ppo']} {this['model']}")
    # clip fractions count tokens: a rounding difference that moves one token across the clip edge moves them
    # by 1/(minibatch tokens) · 1/(minibatches), so they are reported, not held to the tolerance
    diffs, per_step = {}, []
    for a, b in zip(base["history"], this["history"]):
        step = {k: abs(a[k] - b[k]) for k in a.keys() & b.keys() if "gold" not in k and isinstance(a[k], (int, float))}
        per_step.append(max((d, k) for k, d in step.items() if "clipfrac" not in k))
        for k, d in step.items():
            diffs[k] = max(diffs.get(k, 0.0), d)
    counted = {k: d for k, d in diffs.items() if "clipfrac" in k}
    worst = max((d, k) for k, d in diffs.items() if k not in counted)
    print(f"\nsetting {args.setting}, PPO {this['ppo']['batch_size']} prompts × {this['ppo']['max_new_tokens']} tokens, "
          f"{args.threads} thread(s), torch {this['torch']}, {args.steps} steps of each, alternating\n")
    print("| version | s / PPO step, median | fastest step | speed-up (medians) | speed-up (fastest) |")
    print("|---|---|---|---|---|")
    for name, label in (("base", args.base), ("this", "this checkout")):
        med, low = statistics.median(times[name]), min(times[name])
        print(f"| {label} | {med:.3f} | {low:.3f} | {statistics.median(times['base']) / med:.2f}× "
              f"| {min(times['base']) / low:.2f}× |")
    paired = statistics.median(b / t for b, t in zip(times["base"], times["this"]))
    print(f"\nmedian of the paired ratios (each base step over the step of this checkout right after it): "
          f"{paired:.2f}×, {100 * (1 - 1 / paired):.0f}% less time per step")
    print(f"\nlargest difference in the first {HISTORY_STEPS} steps' logs: {worst[0]:.2e} ({worst[1]!r})"
          f" — {'within' if worst[0] <= TOLERANCE else 'ABOVE'} {TOLERANCE:g}; clip fractions (token counts): "
          + ", ".join(f"{k} {d:.1e}" for k, d in sorted(counted.items())))
    print("largest difference per step: " + ", ".join(f"step {i}: {d:.1e} ({k})" for i, (d, k) in enumerate(per_step)))
    if worst[0] > TOLERANCE:
        sys.exit(1)


if __name__ == "__main__":
    main()
