"""Benchmark: how fast the pieces run on this machine, per setting's model size. Prints a table.

    python benchmarks/bench.py [--settings fast default] [--repeats 5] [--threads N]

Measures, for each setting's GPT: a training step (forward + backward + AdamW) on a batch of the
setting's size, sampling a batch of responses with and without the KV cache, and one PPO step
(rollout + 4 epochs of updates) on untrained models. Numbers are medians of `--repeats` runs.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time
from dataclasses import replace

import torch

from minirlhf.generate import generate
from minirlhf.model import GPT
from minirlhf.reward import RewardModel
from minirlhf.rlhf import train_ppo, value_model_from_reward_model
from minirlhf.settings import get_settings
from minirlhf.tokenizer import build_tokenizer, encode_prompts
from minirlhf.training import lm_loss, make_optimizer, pick_device
from minirlhf.world import World, WorldConfig


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_setting(name: str, repeats: int, device) -> dict:
    s = get_settings(name)
    tok = build_tokenizer()
    torch.manual_seed(0)
    model = GPT(replace(s.model, vocab_size=len(tok))).to(device)
    B, T = s.pretrain.batch_size, s.model.block_size // 2
    ids = torch.randint(0, len(tok), (B, T), device=device)
    mask = torch.ones_like(ids)
    opt = make_optimizer(model.parameters(), 1e-4)

    def train_step():
        loss = lm_loss(model, ids, mask, mask)
        opt.zero_grad()
        loss.backward()
        opt.step()

    requests = World(WorldConfig(n_internet=10)).requests["rl"]
    enc = encode_prompts(tok, [r.prompt for r in requests[:s.ppo.batch_size]])
    prompt_ids, prompt_mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
    n = s.ppo.max_new_tokens

    def sample(use_cache):
        # eos_token_id=-1: never stop early, so every run generates exactly n tokens
        return lambda: generate(model, prompt_ids, prompt_mask, n, -1, tok.pad_token_id,
                                generator=torch.Generator(device=device).manual_seed(0), use_cache=use_cache)

    ref = GPT(model.config).to(device)
    rm = RewardModel.from_language_model(model)
    ppo_cfg = replace(s.ppo, steps=1)

    def ppo_step():
        train_ppo(model, ref, rm, value_model_from_reward_model(rm), tok, requests, ppo_cfg, desc="bench")

    step = timed(train_step, repeats)
    return {"setting": name, "params": model.num_parameters(),
            "train step (s)": step, "train tokens/s": B * T / step,
            "sample, KV cache (s)": timed(sample(True), repeats),
            "sample, no cache (s)": timed(sample(False), repeats),
            "PPO step (s)": timed(ppo_step, max(1, repeats // 2))}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", nargs="+", default=["fast", "default"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"device {device}{' (' + torch.cuda.get_device_name() + ')' if device.type == 'cuda' else ''}, "
          f"torch {torch.__version__}")
    rows = [bench_setting(name, args.repeats, device) for name in args.settings]
    cols = list(rows[0])
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(f"{r[c]:,.3f}" if isinstance(r[c], float) else f"{r[c]:,}" if isinstance(r[c], int)
                                else str(r[c]) for c in cols) + " |")


if __name__ == "__main__":
    main()
