"""What every training loop here shares: the device, seeding, the optimiser and its schedule,
the loss of a language model on chosen tokens, and a guard against NaN."""
from __future__ import annotations

import math
import random

import torch
from tqdm.auto import tqdm

from .logprobs import gather_logprobs
from .masks import masked_mean, pad_right


def pick_device(name: str | None = None) -> torch.device:
    """cuda if present, else mps, else cpu (or the device named, if this machine has it)."""
    if name:
        try:
            device = torch.device(name)
        except RuntimeError:
            raise ValueError(f"device {name!r} is not a device PyTorch knows: use cpu, cuda, cuda:N or mps") from None
        mps = getattr(torch.backends, "mps", None)
        present = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": bool(mps and mps.is_available())}
        if not present.get(device.type, False):
            raise ValueError(f"device {name!r} is not available on this machine (this PyTorch sees "
                             f"{', '.join(d for d, ok in present.items() if ok)}): leave --device out to use the best one")
        if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def set_seed(seed: int) -> torch.Generator:
    """Seed Python and torch; return a CPU generator for data order (identical on every device)."""
    random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def make_optimizer(params, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """AdamW with nanoGPT's betas, fused: one kernel updates every parameter (on the CPU as on a GPU), where
    the per-tensor loop launches a dozen small operations per tensor (about 4% of a default PPO step on one
    CPU thread). It rounds differently from the loop, within 1e-5 over a PPO run's first steps
    (benchmarks/ppo_step_vs_commit.py).
    """
    params = [p for p in params if p.requires_grad]
    return torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95), weight_decay=weight_decay, fused=True)


def cosine_lr(step: int, total: int, lr: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to a tenth of `lr` (nanoGPT's schedule)."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return lr * (0.1 + 0.45 * (1 + math.cos(math.pi * min(progress, 1.0))))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def lm_loss(model, input_ids, attention_mask, loss_mask) -> torch.Tensor:
    """Next-token cross-entropy on the tokens where loss_mask is 1 (all (B, T)).

        L = −(1/|M|) Σ_{t ∈ M} log π(x_t | x_<t)

    logits[:, t] predict input_ids[:, t + 1], hence the shift by one on both sides.
    """
    logits, _ = model(input_ids, attention_mask)
    logp = gather_logprobs(logits[:, :-1], input_ids[:, 1:])  # (B, T-1)
    return -masked_mean(logp, loss_mask[:, 1:])


def check_finite(value: torch.Tensor, name: str, step: int) -> None:
    """Stop training with a message a person can act on when a loss turns NaN or Inf."""
    if not torch.isfinite(value).all():
        raise FloatingPointError(f"{name} is {value.item() if value.numel() == 1 else value} at step "
                                 f"{step}: lower the learning rate, or check the inputs of this batch")


def train_lm(model, examples: list[tuple[list[int], list[int]]], steps: int, batch_size: int,
             lr: float, pad_id: int, seed: int, warmup: int = 20, weight_decay: float = 0.0,
             grad_clip: float = 1.0, desc: str = "train") -> list[float]:
    """Minimise `lm_loss` over random batches of (token ids, loss mask) examples.

    Shared by pretraining (loss on every token) and SFT (loss on the response only).
    Returns the loss of every step.
    """
    device = model.device
    gen = set_seed(seed)
    opt = make_optimizer(model.parameters(), lr, weight_decay)
    model.train()
    losses = []
    bar = tqdm(range(steps), desc=desc, mininterval=1.0)
    for step in bar:
        idx = torch.randint(len(examples), (batch_size,), generator=gen).tolist()
        ids, attn = pad_right([examples[i][0] for i in idx], pad_id)
        loss_mask, _ = pad_right([examples[i][1] for i in idx], 0)
        set_lr(opt, cosine_lr(step, steps, lr, warmup))
        loss = lm_loss(model, ids.to(device), attn.to(device), loss_mask.to(device))
        check_finite(loss, f"{desc} loss", step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
        losses.append(loss.item())
        if step % 20 == 0:
            bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.3f}")
    model.eval()
    return losses
