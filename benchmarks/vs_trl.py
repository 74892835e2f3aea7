"""Benchmark: minirlhf's RL steps side by side with TRL's, on identical work, in one process. Prints tables.

    pip install -e .[trl]                    # TRL is an optional extra: nothing else here needs it
    python benchmarks/vs_trl.py [--setting fast|default] [--steps 10] [--threads 1]

Five training loops run on the CPU, each in a thread of its own but one at a time, taking turns step by
step (a machine getting busier or quieter hits all alike): minirlhf's PPO, RLOO and GRPO (rlhf.train_ppo,
group_rl.train_group_rl) and TRL's RLOOTrainer and GRPOTrainer. A step is one rollout and its updates: the
setting's batch of answers (PPOConfig.batch_size; RLOO and GRPO: batch_size / 4 prompts × 4 answers, PPO:
batch_size prompts × 1), up to max_new_tokens tokens each, then epochs × batch_size / minibatch_size
optimiser steps. The work is the same on both sides:

  * the same network: TRL trains a transformers GPT2LMHeadModel with minirlhf's GPTConfig (layers, heads,
    width, vocabulary, context; exact GELU, no dropout, tied embeddings) holding a copy of the weights
    minirlhf's policy starts from (the script checks that the two give the same logits);
  * the same prompts: the world's RL split in the chat format of minirlhf's tokenizer, which TRL gets as
    its processing class (the script checks that TRL's way of applying the template gives the same ids);
  * the same reward: minirlhf's reward model (untrained, started from the policy, as in bench.py), handed
    to TRL as a reward function that scores what minirlhf's rollout scores (the prompt left-padded, the
    answer right-padded with its end token) and gives an answer that never ended PPOConfig.no_end_score.
    So both sides pay the same reward-model pass; both keep a reference model (β = PPOConfig.kl_coef);
  * the same sampling (PPOConfig.temperature, no top-k or top-p) and optimiser (AdamW's fused kernel, betas 0.9 and
    0.95, no weight decay, PPOConfig.lr held constant, gradients clipped to norm 1), all in float32.

TRL's configuration, its defaults changed only where they would do other work than minirlhf does:
per_device_train_batch_size = minibatch_size, gradient_accumulation_steps = 1, steps_per_generation =
batch_size / minibatch_size, num_iterations = epochs, num_generations = 4, max_completion_length =
max_new_tokens, beta = kl_coef, epsilon = clip; gradient_checkpointing off (TRL turns it on by default: it
recomputes the forward pass during the backward), bf16 off (TRL's default is on, on the CPU too), no vLLM,
no logging, saving or reports. RLOO keeps normalize_advantages off and GRPO keeps loss_type "dapo" and
scale_rewards "group": TRL's defaults, and what minirlhf does. The script prints the configuration as TRL
resolved it, and what still differs, under the tables.

Each loop's first step is a warm-up (TRL's includes building its trainer), its second is counted with
FlopCounterMode (matrix products and attention, forward and backward: the CPU's attention kernels are added
to its table, which lacks them), and the next `--steps` are timed: medians. Tokens/s counts the answer
tokens actually sampled, end tokens included. MFU = FLOPs / time / the peak of a 1024³ float32 matrix
product at the same thread count (bench.py's).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import replace
from pathlib import Path

if importlib.util.find_spec("trl") is None:
    sys.exit("TRL is not installed: run `pip install -e .[trl]` in the repository root, then this again")
os.environ.setdefault("TQDM_DISABLE", "1")   # read when tqdm is imported: no progress bars between the tables

import torch
import transformers
import trl
from datasets import Dataset
from torch.utils.flop_counter import FlopCounterMode
from transformers import GPT2Config, GPT2LMHeadModel, PrinterCallback, TrainerCallback
from transformers.pytorch_utils import Conv1D

from bench import CPU_ATTENTION, peak_flops
from minirlhf.group_rl import train_group_rl
from minirlhf.grpo import grpo_advantages
from minirlhf.masks import pad_right
from minirlhf.model import GPT, default_position_ids
from minirlhf.pipeline.registry import GROUP_SIZE
from minirlhf.reward import RewardModel
from minirlhf.rlhf import train_ppo, value_model_from_reward_model
from minirlhf.rloo import rloo_advantages
from minirlhf.settings import get_settings
from minirlhf.tokenizer import build_tokenizer, encode_prompts, prompt_ids
from minirlhf.world import World

TIMED_FROM = 2   # step 0 is the warm-up, step 1 is counted


class Turns:
    """A training loop in a thread of its own, run one step at a time.

    `loop(boundary)` trains, calling `boundary()` after every step, and its return value ends up in
    `result`. `step()` lets the loop run to its next boundary and returns the seconds that took; the
    caller waits meanwhile, and every other loop waits at its boundary, so only one loop runs at any
    moment. With `count_flops`, the step runs under a FlopCounterMode, entered in the loop's own thread
    (a mode sees only the thread it was entered in).
    """

    def __init__(self, loop, threads: int):
        self.go, self.done = threading.Semaphore(0), threading.Semaphore(0)
        self.counter, self.error, self.finished, self.result = None, None, False, None
        self.thread = threading.Thread(target=self._run, args=(loop, threads), daemon=True)
        self.thread.start()

    def _run(self, loop, threads: int):
        torch.set_num_threads(threads)   # OpenMP keeps the count per thread: set it in this one too
        self._wait()
        try:
            self.result = loop(self._boundary)
        except BaseException as e:   # handed to the caller, who raises it
            self.error = e
        self._stop_counting()
        self.finished = True
        self.done.release()

    def _wait(self):
        self.go.acquire()
        if self.counter is not None:
            self.counter.__enter__()

    def _stop_counting(self):
        if self.counter is not None:
            self.counter.__exit__(None, None, None)

    def _boundary(self):
        self._stop_counting()
        self.done.release()
        self._wait()

    def step(self, count_flops: bool = False) -> float:
        if self.finished:
            raise RuntimeError("the training loop ended before its last step")
        self.counter = FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION) if count_flops else None
        start = time.perf_counter()
        self.go.release()
        self.done.acquire()
        seconds = time.perf_counter() - start
        if self.error is not None:
            raise self.error
        return seconds

    def flops(self) -> int:
        """The FLOPs of the last step, which must have been run with count_flops."""
        return self.counter.get_total_flops()

    def finish(self):
        """Let the loop end after its last step, and wait for it."""
        self.go.release()
        self.thread.join()
        if self.error is not None:
            raise self.error


def gpt2_copy(model: GPT, tok) -> GPT2LMHeadModel:
    """A transformers GPT-2 with `model`'s sizes and weights: the same function of the tokens."""
    c = model.config
    hf = GPT2LMHeadModel(GPT2Config(
        vocab_size=c.vocab_size, n_positions=c.block_size, n_layer=c.n_layer, n_head=c.n_head, n_embd=c.n_embd,
        activation_function="gelu", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id))
    t = hf.transformer
    pairs = [(model.tok_emb, t.wte), (model.pos_emb, t.wpe), (model.ln_f, t.ln_f)]
    for ours, theirs in zip(model.blocks, t.h):
        pairs += [(ours.ln1, theirs.ln_1), (ours.attn.qkv, theirs.attn.c_attn), (ours.attn.proj, theirs.attn.c_proj),
                  (ours.ln2, theirs.ln_2), (ours.mlp[0], theirs.mlp.c_fc), (ours.mlp[2], theirs.mlp.c_proj)]
    with torch.no_grad():
        for ours, theirs in pairs:
            # GPT-2's Conv1D keeps its weight as (in, out), a Linear as (out, in)
            theirs.weight.copy_(ours.weight.T if isinstance(theirs, Conv1D) else ours.weight)
            if getattr(ours, "bias", None) is not None:
                theirs.bias.copy_(ours.bias)
    return hf.eval()


def check_same_work(model: GPT, hf: GPT2LMHeadModel, tok, requests, conversations) -> float:
    """Stop unless TRL renders the prompts (`conversations`: `requests` as TRL takes them) as minirlhf does;
    return the largest logit difference between the two copies of the network on those prompts."""
    rendered = tok.apply_chat_template(conversations, add_generation_prompt=True, tokenize=True, return_dict=True)
    if rendered["input_ids"] != [list(prompt_ids(tok, r.prompt)) for r in requests]:
        sys.exit("TRL's rendering of the chat template gives other token ids than minirlhf's: not the same prompts")
    enc = encode_prompts(tok, [r.prompt for r in requests[:64]])
    with torch.no_grad():
        ours = model(enc["input_ids"], enc["attention_mask"])[0]
        # positions counted from each prompt's first real token, as minirlhf and transformers' generate() count them
        theirs = hf(**enc, position_ids=default_position_ids(enc["attention_mask"])).logits
    return (ours - theirs)[enc["attention_mask"].bool()].abs().max().item()


def reward_function(rm: RewardModel, tok, no_end_score: float | None, tokens: list[int]):
    """minirlhf's reward model as a TRL reward function; `tokens` gets each rollout's count of answer tokens."""
    def minirlhf_reward_model(prompts, completion_ids, **_):
        tokens.append(sum(len(c) for c in completion_ids))
        # what minirlhf's rollout scores: the prompt left-padded, then the answer (with its end token, if any)
        enc = encode_prompts(tok, [p[0]["content"] for p in prompts])
        answers, mask = pad_right(completion_ids, tok.pad_token_id)
        with torch.no_grad():
            scores = rm(torch.cat([enc["input_ids"], answers], 1), torch.cat([enc["attention_mask"], mask], 1))
        if no_end_score is not None:   # rollout.py's "EOS trick"
            ended = torch.tensor([c[-1] == tok.eos_token_id for c in completion_ids])
            scores = torch.where(ended, scores, torch.full_like(scores, no_end_score))
        return scores.tolist()
    return minirlhf_reward_model


class AtUpdate(TrainerCallback):
    """Calls `boundary()` after every `every`-th optimiser step of a transformers Trainer."""

    def __init__(self, every: int, boundary):
        self.every, self.boundary = every, boundary

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.every == 0:
            self.boundary()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setting", default="fast", choices=["fast", "default"])
    parser.add_argument("--steps", type=int, default=10, help="timed steps of each method, taking turns")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # transformers 5 renamed gradient_checkpointing, which TRL's configs still set: a warning for TRL, not for us
    warnings.filterwarnings("ignore", message=".*gradient_checkpointing.* is deprecated", category=FutureWarning)

    settings = get_settings(args.setting)
    cfg = settings.ppo
    tok = build_tokenizer()
    requests = World(settings.world).requests["rl"]
    total = TIMED_FROM + args.steps
    updates = cfg.epochs * (cfg.batch_size // cfg.minibatch_size)   # optimiser steps per step

    torch.manual_seed(0)
    start = GPT(replace(settings.model, vocab_size=len(tok)))
    hf = gpt2_copy(start, tok)
    conversations = [[{"role": "user", "content": r.prompt}] for r in requests]   # the prompts as TRL takes them
    logits_gap = check_same_work(start, hf, tok, requests, conversations)

    def models():
        """Fresh copies of the starting point: policy, reference, reward model."""
        policy, ref = GPT(start.config), GPT(start.config)
        policy.load_state_dict(start.state_dict())
        ref.load_state_dict(start.state_dict())
        return policy, ref, RewardModel.from_language_model(start)

    def ppo(boundary):
        policy, ref, rm = models()
        return train_ppo(policy, ref, rm, value_model_from_reward_model(rm), tok, requests, replace(cfg, steps=total),
                         after_step=lambda n, _: boundary())

    def group(advantages, kl_in_loss):
        def loop(boundary):
            return train_group_rl(*models(), tok, requests, replace(cfg, steps=total), advantages, GROUP_SIZE,
                                  kl_in_loss, after_step=lambda n, _: boundary())
        return loop

    trl_tokens = {"TRL RLOO": [], "TRL GRPO": []}   # answer tokens of each rollout, counted by the reward function
    trl_args = {}                                  # each TRL configuration as its trainer resolved it
    trl_common = dict(
        per_device_train_batch_size=cfg.minibatch_size, gradient_accumulation_steps=1,
        steps_per_generation=cfg.batch_size // cfg.minibatch_size, num_iterations=cfg.epochs,
        num_generations=GROUP_SIZE, max_completion_length=cfg.max_new_tokens, temperature=cfg.temperature,
        top_p=1.0, top_k=0, beta=cfg.kl_coef, epsilon=cfg.clip, learning_rate=cfg.lr, lr_scheduler_type="constant",
        adam_beta1=0.9, adam_beta2=0.95, weight_decay=0.0, max_grad_norm=cfg.grad_clip, max_steps=total * updates,
        gradient_checkpointing=False, bf16=False, use_vllm=False, use_cpu=True, disable_dropout=True,
        disable_tqdm=True, logging_strategy="no", save_strategy="no", report_to="none", seed=0)

    with tempfile.TemporaryDirectory() as tmp:
        hf.save_pretrained(Path(tmp) / "policy")   # TRL loads the policy and its reference from a path
        dataset = Dataset.from_dict({"prompt": conversations})

        def trl_loop(name, trainer_class, config_class, **extra):
            def loop(boundary):
                _, _, rm = models()
                trainer = trainer_class(
                    model=str(Path(tmp) / "policy"), processing_class=tok, train_dataset=dataset,
                    reward_funcs=reward_function(rm, tok, cfg.no_end_score, trl_tokens[name]),
                    args=config_class(output_dir=str(Path(tmp) / name), **trl_common, **extra),
                    callbacks=[AtUpdate(updates, boundary)])
                trainer.remove_callback(PrinterCallback)   # it would print the run's log at its end
                trl_args[name] = trainer.args
                trainer.train()
            return loop

        loops = {"minirlhf PPO": ppo, "minirlhf RLOO": group(rloo_advantages, False),
                 "minirlhf GRPO": group(grpo_advantages, True),
                 "TRL RLOO": trl_loop("TRL RLOO", trl.RLOOTrainer, trl.RLOOConfig, normalize_advantages=False),
                 "TRL GRPO": trl_loop("TRL GRPO", trl.GRPOTrainer, trl.GRPOConfig, loss_type="dapo",
                                      scale_rewards="group")}
        peak = peak_flops(torch.device("cpu"))
        print(f"setting {args.setting}: {start.num_parameters():,} parameters (the GPT-2 copy: "
              f"{hf.num_parameters():,}, largest logit difference {logits_gap:.1e}); {cfg.batch_size} answers × "
              f"≤ {cfg.max_new_tokens} tokens per step, {cfg.epochs} epochs × {cfg.batch_size // cfg.minibatch_size} "
              f"minibatches of {cfg.minibatch_size}; {args.threads} thread(s), peak {peak / 1e9:.0f} GFLOP/s; "
              f"torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}", flush=True)

        turns = {name: Turns(loop, args.threads) for name, loop in loops.items()}
        names = list(turns)
        seconds, flops = {name: [] for name in names}, {}
        for r in range(total):   # round by round, one step of each method, in an order that turns each round
            for name in names[r % len(names):] + names[:r % len(names)]:
                seconds[name].append(turns[name].step(count_flops=r == TIMED_FROM - 1))
                if r == TIMED_FROM - 1:
                    flops[name] = turns[name].flops()
            label = " (warm-up)" if r == 0 else " (FLOPs counted)" if r < TIMED_FROM else ""
            print(f"round {r}{label}: " + ", ".join(f"{name} {seconds[name][-1]:.2f} s" for name in names), flush=True)
        for t in turns.values():
            t.finish()

    # answer tokens of every step: minirlhf logs each step's mean answer length; for TRL, reward_function counted them
    tokens = {name: [h["response_len"] * cfg.batch_size for h in turns[name].result]
              for name in names if name.startswith("minirlhf")} | trl_tokens
    report(seconds, flops, tokens, peak)
    for name, config in trl_args.items():
        resolved = [f"{key} {shown(config, key)}" for key in SHOWN if hasattr(config, key)]
        print(f"\n{name} as it ran: " + ", ".join(resolved))
    print("\nWhat still differs (the network, prompts, reward, batch sizes and optimiser steps are the same):")
    for note in NOTES:
        print(f"  - {note}")


def report(seconds: dict, flops: dict, tokens: dict, peak: float):
    """The tables: each method's timed steps, then minirlhf's methods over TRL's."""
    times = {name: s[TIMED_FROM:] for name, s in seconds.items()}
    timed_tokens = {name: statistics.mean(t[TIMED_FROM:]) for name, t in tokens.items()}
    counted_tokens = {name: t[TIMED_FROM - 1] for name, t in tokens.items()}
    steps = len(next(iter(times.values())))
    print(f"\n{steps} timed steps of each method (medians). The policies learn as they go and their answers "
          "change length: the FLOPs are the counted step's, whose answer tokens are beside them\n")
    print("| method | s / step | fastest | answer tokens / step | tokens/s | GFLOP / step | its answer tokens "
          "| GFLOP/s | MFU |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in times:
        med = statistics.median(times[name])
        print(f"| {name} | {med:.3f} | {min(times[name]):.3f} | {timed_tokens[name]:.0f} "
              f"| {timed_tokens[name] / med:,.0f} | {flops[name] / 1e9:.2f} | {counted_tokens[name]:.0f} "
              f"| {flops[name] / med / 1e9:.1f} | {100 * flops[name] / med / peak:.0f}% |")
    print("\n| minirlhf / TRL | time per step (medians) | paired (median of per-round ratios) | time per answer token "
          "| FLOPs per step | FLOPs per answer token (counted step) | FLOP/s |")
    print("|---|---|---|---|---|---|---|")
    for ours, theirs in [("PPO", "RLOO"), ("PPO", "GRPO"), ("RLOO", "RLOO"), ("GRPO", "GRPO")]:
        a, b = f"minirlhf {ours}", f"TRL {theirs}"
        time_ratio = statistics.median(times[a]) / statistics.median(times[b])
        paired = statistics.median(x / y for x, y in zip(times[a], times[b]))
        flop_ratio = flops[a] / flops[b]
        per_token_time = time_ratio * timed_tokens[b] / timed_tokens[a]
        per_token_flops = flop_ratio * counted_tokens[b] / counted_tokens[a]
        print(f"| {a} / {b} | {time_ratio:.2f}× | {paired:.2f}× | {per_token_time:.2f}× | {flop_ratio:.2f}× "
              f"| {per_token_flops:.2f}× | {flop_ratio / time_ratio:.2f}× |")


def shown(config, key: str):
    value = getattr(config, key)
    return getattr(value, "value", value)   # an enum's value: "constant", not SchedulerType.CONSTANT


SHOWN = ["generation_batch_size", "per_device_train_batch_size", "steps_per_generation", "num_iterations",
         "gradient_accumulation_steps", "num_generations", "max_completion_length", "temperature", "top_k", "top_p",
         "beta", "epsilon", "loss_type", "scale_rewards", "normalize_advantages", "learning_rate", "lr_scheduler_type",
         "optim", "adam_beta2", "weight_decay", "max_grad_norm", "gradient_checkpointing", "bf16", "use_vllm"]
NOTES = [
    "PPO does more than RLOO and GRPO: a value model as large as the policy, run at the rollout and trained on "
    "every minibatch (its FLOPs are in PPO's row). It is set beside TRL's group methods because TRL 1.16 has no "
    "PPOTrainer (in trl or in trl.experimental)",
    "prompts: minirlhf draws each step's prompts at random (with replacement), TRL walks a shuffled pass over the "
    "dataset; prompts differ in length, and so does each batch's left padding",
    "minibatches: minirlhf reshuffles the rollout every epoch; TRL shuffles it once and reuses the same split "
    "in each of its num_iterations",
    "the output layer: minirlhf's forward passes compute logits at every position and keep the answer's; TRL "
    "computes them at the answer's positions only (logits_to_keep), in chunks, never the whole logits tensor",
    "RLOO's clipping: TRL clips one ratio per answer (exp of the summed log-ratio), minirlhf one per token (PPO's "
    "surrogate); the same passes either way",
    "padding: minirlhf's passes without a KV cache (scoring the rollout, training) lay the sequences of a padded "
    "batch end to end in rows (packing.py) and compute no padding there; TRL's run the padded batch. Few answers "
    "of these untrained policies end early, so their batches hold little padding besides the prompts' left padding",
    "positions: TRL gives GPT-2 no position_ids in its log-prob passes, so there a left-padded prompt's positions "
    "count from the batch's first column, while generate() (and minirlhf everywhere) counts them from the prompt's "
    "first token: for a padded prompt TRL's log π_old and log π_ref are not those of the distribution it sampled "
    "from (the same FLOPs, other numbers)",
    "a TRL step includes the Trainer's machinery (accelerate, callbacks, metrics) around the model passes: it is "
    "part of what TRL costs",
]


if __name__ == "__main__":
    main()
