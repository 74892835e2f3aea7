"""Benchmark: how fast the pieces run on this machine, per setting's model size and thread count.

    python benchmarks/bench.py [--settings fast default] [--threads 1 2 4] [--repeats 5]
                               [--device cuda] [--precision fp32 tf32 bf16]

Measures, for each setting's GPT: a training step (forward + backward + AdamW) on a batch of the
setting's size, sampling a batch of responses with and without the KV cache, and one step of each
algorithm on untrained models: PPO, RLOO and GRPO (rollout of the setting's batch of answers + their
epochs of updates; RLOO and GRPO without a value model), DPO (one batch of rankings, K answers each,
with its reference pass). Times are medians of `--repeats` runs (of half as many for an algorithm's
step, the slow pieces); "answers/s" is the answers a step learns from per second.

MFU (model FLOPs utilisation) = the FLOPs a piece does / its time / the machine's peak, where the
FLOPs are counted by PyTorch's FlopCounterMode (matrix products and attention, forward and backward)
and the peak is measured: a 1024 × 1024 × 1024 float32 matrix product at the same thread count.
The thread table says which count is fastest here; pipeline/threads.py explains the default.

`--precision` measures each piece in other arithmetic too: tf32 (float32 tensors, matrix products in
TensorFloat-32 on a GPU that has it: torch.set_float32_matmul_precision("high")) and bf16 (torch.autocast
to bfloat16: matrix products and attention in bfloat16, softmax, log-softmax and layer norms in float32;
around the training step's forward pass and loss only, around sampling and an algorithm's whole step). On a GPU, a
model this small is bound by how fast the CPU launches kernels, not by arithmetic: if the precisions'
times are alike, float32 is the choice (nothing rounds more than it must). MFU is always against the
float32 peak.
"""
from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import time
from contextlib import contextmanager, nullcontext
from dataclasses import replace

import torch
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

from datasets import Dataset

from minirlhf.dpo import train_dpo
from minirlhf.generate import generate
from minirlhf.group_rl import train_group_rl
from minirlhf.grpo import grpo_advantages
from minirlhf.model import GPT
from minirlhf.reward import RewardModel
from minirlhf.pipeline.registry import GROUP_SIZE
from minirlhf.rlhf import train_ppo, value_model_from_reward_model
from minirlhf.rloo import rloo_advantages
from minirlhf.settings import get_settings
from minirlhf.tokenizer import build_tokenizer, encode_prompts
from minirlhf.training import lm_loss, make_optimizer, pick_device
from minirlhf.world import World, WorldConfig


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn, repeats: int, statistic=statistics.median) -> float:
    """`statistic` (default: the median) of `repeats` timed calls, after one warm-up call."""
    fn()  # warm-up
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistic(times)


aten = torch.ops.aten
# FlopCounterMode counts the GPU's attention kernels but not the CPU's (torch 2.13), which
# F.scaled_dot_product_attention calls on the CPU: count them with PyTorch's own formulas
CPU_ATTENTION = {
    aten._scaled_dot_product_flash_attention_for_cpu:
        lambda q, k, v, *_, out_shape=None, **__: flop_counter.sdpa_flop_count(q, k, v),
    aten._scaled_dot_product_flash_attention_for_cpu_backward:
        lambda grad, q, k, v, *_, out_shape=None, **__: flop_counter.sdpa_backward_flop_count(grad, q, k, v),
}


def flops(fn) -> int:
    """Floating-point operations of one call, as PyTorch counts them (matrix products, attention)."""
    with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION) as counter:
        fn()
    return counter.get_total_flops()


def peak_flops(device, n: int = 1024, repeats: int = 30) -> float:
    """FLOP/s of a large float32 matrix product: the most this machine does at this thread count
    (its fastest run: a peak, so the least disturbed run is the one that counts)."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    return 2 * n ** 3 / timed(lambda: a @ b, repeats, statistic=min)


@contextmanager
def precision(name: str):
    """Float32 matrix products as they are ('fp32', 'bf16') or in TensorFloat-32 where the GPU has it ('tf32')."""
    old = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high" if name == "tf32" else "highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(old)


def build_pieces(name: str, device, arithmetic: str = "fp32", tokens: int | None = None):
    """Each piece of setting `name` as a call of no arguments, on models fresh from their random initialisation:
    returns ({piece: call}, {piece: the answers one call learns from}, the model's parameter count). The
    training step is a batch of the setting's pretraining of `tokens` tokens each (default: half a block).
    Also what benchmarks/profile_gpu.py profiles."""
    s = get_settings(name)

    def autocast():
        """bf16: autocast around the training step's forward pass and loss, as PyTorch's recipe has it (the
        backward pass and the optimiser outside); sampling and an algorithm's step run whole inside it."""
        return torch.autocast(device.type, dtype=torch.bfloat16) if arithmetic == "bf16" else nullcontext()

    tok = build_tokenizer()
    torch.manual_seed(0)
    model = GPT(replace(s.model, vocab_size=len(tok))).to(device)
    B, T = s.pretrain.batch_size, tokens or s.model.block_size // 2
    ids = torch.randint(0, len(tok), (B, T), device=device)
    mask = torch.ones_like(ids)
    opt = make_optimizer(model.parameters(), 1e-4)

    def train_step():
        with autocast():
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
        def run():
            with autocast():
                generate(model, prompt_ids, prompt_mask, n, -1, tok.pad_token_id,
                         generator=torch.Generator(device=device).manual_seed(0), use_cache=use_cache)
        return run

    ppo_cfg = replace(s.ppo, steps=1)

    torch.manual_seed(0)
    init = GPT(model.config).to(device)
    init_rm = RewardModel.from_language_model(init)
    init_value = value_model_from_reward_model(init_rm)

    def fresh(n: int):
        """The first `n` of (policy, reference, reward model, value model), fresh for every step so that each
        does the same work (same samples, same lengths): copies of models built once, since building one (its
        random initialisation, on the CPU) is not the step's work and took over a third of a gpu-setting PPO
        step's time on a GPU. The copying is timed with the step: a memory copy, 7 ms for all four of the
        fast setting's models and 13 ms for the default's on a 2-core CPU, beside steps of seconds."""
        torch.manual_seed(0)
        return tuple(copy.deepcopy(m) for m in (init, init, init_rm, init_value)[:n])

    def ppo_step():
        policy, ref, rm, value = fresh(4)
        with autocast():
            train_ppo(policy, ref, rm, value, tok, requests, ppo_cfg, desc="bench")

    def group_step(advantages, kl_in_loss):
        def run():
            with autocast():
                train_group_rl(*fresh(3), tok, requests, ppo_cfg, advantages, GROUP_SIZE, kl_in_loss, desc="bench")
        return run

    k, P = s.reward.k, s.dpo.prompts_per_batch   # one DPO step: P rankings of K answers of n words
    words = [tok.decode([i]) for i in range(len(tok))][10:]
    rankings = Dataset.from_dict({"prompt": [r.prompt for r in requests[:P]],
                                  "responses": [[" ".join(words[(7 * a + j) % len(words)] for j in range(n - 1))
                                                 for a in range(k)] for _ in range(P)],
                                  "ended": [[True] * k] * P, "ranking": [list(range(k))] * P})

    def dpo_step():
        policy, ref = fresh(2)
        with autocast():
            train_dpo(policy, ref, tok, rankings, replace(s.dpo, epochs=1), desc="bench")

    pieces = {"train step": train_step, "sample, KV cache": sample(True), "sample, no cache": sample(False),
              "PPO step": ppo_step, "RLOO step": group_step(rloo_advantages, False),
              "GRPO step": group_step(grpo_advantages, True), "DPO step": dpo_step}
    answers = {"PPO step": s.ppo.batch_size, "RLOO step": s.ppo.batch_size, "GRPO step": s.ppo.batch_size,
               "DPO step": P * k}
    return pieces, answers, model.num_parameters()


def bench_setting(name: str, repeats: int, device, arithmetic: str = "fp32") -> dict:
    pieces, answers, params = build_pieces(name, device, arithmetic)
    row = {"setting": name, "params": params}
    for piece, fn in pieces.items():
        seconds = timed(fn, max(1, repeats // 2) if piece in answers else repeats)
        row[f"{piece} (s)"] = seconds
        if piece in answers:
            row[f"{piece} answers/s"] = answers[piece] / seconds
        row[f"{piece} GFLOP/s"] = flops(fn) / seconds / 1e9
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", nargs="+", default=["fast", "default"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default=None)
    parser.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "tf32", "bf16"],
                        help="arithmetic to measure each piece in (default: fp32; tf32 changes the products of "
                             "hardware with TF32 units: a GPU's, mostly)")
    cores = os.cpu_count() or 1
    parser.add_argument("--threads", type=int, nargs="+", default=sorted({1, 2, 4, cores}),
                        help=f"torch CPU thread counts to measure (default: 1 2 4 and this machine's {cores} cores)")
    args = parser.parse_args()
    device = pick_device(args.device)
    if device.type != "cpu":
        args.threads = [torch.get_num_threads()]   # on a GPU the CPU threads hardly matter: measure once
    print(f"machine: {platform.processor() or platform.machine()}, {cores} cores, device {device}"
          f"{' (' + torch.cuda.get_device_name() + ')' if device.type == 'cuda' else ''}, torch {torch.__version__}")
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        peak = peak_flops(device)
        print(f"{threads} thread(s): peak {peak / 1e9:,.0f} GFLOP/s (1024³ float32 matrix product)", flush=True)
        for name in args.settings:
            for arithmetic in args.precision:
                with precision(arithmetic):
                    row = {"threads": threads, "precision": arithmetic,
                           **bench_setting(name, args.repeats, device, arithmetic)}
                for key in [k for k in row if k.endswith("GFLOP/s")]:
                    row[key.replace("GFLOP/s", "MFU")] = f"{100 * row.pop(key) * 1e9 / peak:.0f}%"
                rows.append(row)
                print(f"  {name}, {arithmetic}: " + ", ".join(f"{k[:-4]} {row[k]:.3f} s" for k in row
                                                              if k.endswith("(s)")), flush=True)
    cols = list(rows[0])
    print("\n| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(f"{r[c]:,.3f}" if isinstance(r[c], float) else f"{r[c]:,}" if isinstance(r[c], int)
                                else str(r[c]) for c in cols) + " |")
    for name in args.settings:   # the thread table: each piece's time relative to one thread
        mine = [r for r in rows if r["setting"] == name and r["precision"] == args.precision[0]]
        one = next((r for r in mine if r["threads"] == 1), mine[0])
        print(f"\n{name}: time relative to {one['threads']} thread(s) (below 1 is faster)")
        for r in mine:
            print(f"  {r['threads']} threads: " + ", ".join(
                f"{k[:-4]} {r[k] / one[k]:.2f}" for k in r if k.endswith("(s)")))
    for name in args.settings:   # the precision table: each piece's time relative to the first precision
        for threads in args.threads[:1] if len(args.precision) > 1 else []:
            mine = [r for r in rows if r["setting"] == name and r["threads"] == threads]
            print(f"\n{name}, {threads} thread(s): time relative to {mine[0]['precision']} (below 1 is faster)")
            for r in mine:
                print(f"  {r['precision']}: " + ", ".join(
                    f"{k[:-4]} {r[k] / mine[0][k]:.2f}" for k in r if k.endswith("(s)")))


if __name__ == "__main__":
    main()
