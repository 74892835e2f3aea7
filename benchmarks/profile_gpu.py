"""Benchmark: where a step's time goes, by PyTorch's profiler: the GPU's kernels busy, launches, waits.

    python benchmarks/profile_gpu.py [--setting gpu] [--device cuda]

Profiles three pieces at a setting's sizes, on models fresh from their random initialisation: a pretraining
step (the setting's batch of full blocks: forward, backward, AdamW), sampling the PPO batch's answers with the
KV cache, and one PPO step (rollout and its epochs of minibatch updates). For each piece it prints the
profiler's table of the CPU's busiest operations; then one table: each piece's wall time per call (timed
without the profiler), how long the GPU was busy within it (kernels, copies and memsets), how many kernels the
CPU launched, and how often the CPU waited for the GPU (stream synchronisations, and of them the `.item()`
calls that read a GPU value on the host). A piece whose GPU is busy most of its wall time is bound by
arithmetic; one busy a small share is bound by the CPU that launches its kernels. On a CPU (`--device cpu`)
only the wall times and the CPU tables mean anything.

The pieces are bench.py's (`build_pieces`): the PPO step's models are copies of models built once, since
building one (its random initialisation on the CPU) is not the step's work.
"""
from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import replace

import torch
from torch.profiler import ProfilerActivity, profile

from bench import build_pieces   # this folder's bench.py: the pieces, built once for both benchmarks
from minirlhf.settings import PRESETS, get_settings
from minirlhf.training import pick_device

# what makes the CPU wait for the GPU: explicit synchronisations and reads of a GPU value on the host
WAITS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize", "aten::item",
         "aten::_local_scalar_dense")
LAUNCHES = ("cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel", "cuLaunchKernelEx")


def pieces(setting: str, device) -> list[tuple[str, Callable[[], None], int]]:
    """(name, one call, calls per measurement) of each piece, at `setting`'s sizes: bench.py's pieces."""
    s = get_settings(setting)
    calls, _, _ = build_pieces(setting, device, tokens=s.model.block_size)
    return [(f"pretraining step, {s.pretrain.batch_size} × {s.model.block_size} tokens", calls["train step"], 10),
            (f"sampling {s.ppo.batch_size} answers × {s.ppo.max_new_tokens} tokens, KV cache",
             calls["sample, KV cache"], 2),
            (f"PPO step ({s.ppo.batch_size} answers, {s.ppo.epochs} epochs)", calls["PPO step"], 1)]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setting", default="gpu", choices=sorted(PRESETS))
    parser.add_argument("--device", default=None, help="cuda, cpu, … (default: a GPU if there is one)")
    args = parser.parse_args()
    device = pick_device(args.device)
    on_gpu = device.type == "cuda"
    sync = torch.cuda.synchronize if on_gpu else (lambda: None)
    rows = []
    for name, fn, calls in pieces(args.setting, device):
        fn()   # warm-up
        sync()
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        sync()
        wall = (time.perf_counter() - start) / calls
        with profile(activities=[ProfilerActivity.CPU] + [ProfilerActivity.CUDA] * on_gpu) as prof:
            for _ in range(calls):
                fn()
            sync()
        events = prof.key_averages()
        busy = sum(e.self_device_time_total for e in events if e.device_type == torch.autograd.DeviceType.CUDA)
        launches = sum(e.count for e in events if e.key in LAUNCHES)
        waits = {k: sum(e.count for e in events if e.key == k) / calls for k in WAITS}
        rows.append((name, wall * 1e3, busy / 1e3 / calls, launches / calls, waits))
        print(f"\n== {name}: CPU's busiest operations over {calls} call(s)")
        print(events.table(sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=45))
    print(f"\n{args.setting} setting on {device}{' (' + torch.cuda.get_device_name() + ')' if on_gpu else ''}, "
          f"torch {torch.__version__}; per call:\n")
    print("| piece | wall | GPU busy | kernel launches | waits for the GPU (stream syncs; of them `.item()`) |")
    print("|---|---|---|---|---|")
    for name, wall, busy, launches, waits in rows:
        syncs = waits["cudaStreamSynchronize"] + waits["cudaDeviceSynchronize"] + waits["cudaEventSynchronize"]
        print(f"| {name} | {wall:,.1f} ms | {busy:,.1f} ms ({busy / wall:.0%}) | {launches:,.0f} | "
              f"{syncs:,.0f}; {waits['aten::item']:,.0f} |")


if __name__ == "__main__":
    main()
