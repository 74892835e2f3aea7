"""Is the reward model held back by its training or by its size? Retrain it on the same comparisons.

    python benchmarks/reward_model_training.py [--setting fast] [--seeds 0 1 2] [--variants NAME ...]

For each seed, the reward stage is loaded from the stage cache (trained first if it is not there), and a reward
model is trained again from the SFT model on the stage's own comparisons, once per variant of the setting's training
(RewardConfig), and once from the base model with the setting's own training. The table gives its gold accuracy on
its training pairs and on the held-out pairs (reward.pairwise_accuracy, the ledger's `rm_agrees_with_gold`). The
first variant is the setting's own and reproduces the stage; two more train the same recipe from other training
seeds: the spread any variant's Δ is to be read against (docs/measurements.md). If no variant moves held-out
accuracy on every seed, and training accuracy is not far above it, the model is not short of training: it is at
its capacity, or short of comparisons where gold's preference is small and the labels nearly random (notebook
04's table by gold margin). The fast reward model with 1,200 rankings was not short of training: no variant here
helped it on every seed, and 2,400 rankings did (settings.py). Nor did a reward model gain beyond seed noise from
starting at the base model, which learned the facts in pretraining, rather than at SFT (settings.py has the
values).
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace

from minirlhf.pipeline import arguments
from minirlhf.pipeline.stages import Pipeline
from minirlhf.reward import RewardModel, pairwise_accuracy, train_reward_model
from minirlhf.settings import PRESETS
from minirlhf.training import set_seed

VARIANTS = {   # name -> the changes to the setting's RewardConfig
    "the setting's own": lambda c: {},
    "1.6 × the epochs": lambda c: {"epochs": round(1.6 * c.epochs)},
    "2 × the epochs at half the lr": lambda c: {"epochs": 2 * c.epochs, "lr": c.lr / 2},
    "2 × the epochs": lambda c: {"epochs": 2 * c.epochs},
    "2/5 × the epochs at 2 × the lr": lambda c: {"epochs": max(1, round(0.4 * c.epochs)), "lr": 2 * c.lr},
    "5/3 × the lr": lambda c: {"lr": c.lr * 5 / 3},
    "half the prompts a batch": lambda c: {"prompts_per_batch": max(1, c.prompts_per_batch // 2)},
}
# not a change of RewardConfig: the language model the reward model starts from (the stage's is the SFT model)
INITS = {"from the base model": "base"}
# … nor is the training seed (the head's initial weights, the order of the batches): what the same recipe gives
# from another draw, the noise any other variant's Δ is to be read against
TRAINING_SEEDS = {"another training seed": 100, "a third training seed": 200}   # name -> offset from the seed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setting", choices=sorted(PRESETS), default="fast")
    parser.add_argument("--seeds", type=arguments.seed, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", choices=[*VARIANTS, *INITS, *TRAINING_SEEDS], metavar="VARIANT",
                        help="the variants to train, by name (default: all; the setting's own always runs first, "
                             "to compare against): " + "; ".join([*VARIANTS, *INITS, *TRAINING_SEEDS]))
    args = parser.parse_args()
    print(f"{'seed':>4}  {'variant':<32} {'train':>6} {'held-out':>8} {'Δ held-out':>10} {'seconds':>8}")
    wanted = set(args.variants or [*VARIANTS, *INITS, *TRAINING_SEEDS]) | {"the setting's own"}
    recipe = VARIANTS["the setting's own"]
    runs = [(name, change, "sft", 0) for name, change in VARIANTS.items() if name in wanted]
    runs += [(name, recipe, init, 0) for name, init in INITS.items() if name in wanted]
    runs += [(name, recipe, "sft", offset) for name, offset in TRAINING_SEEDS.items() if name in wanted]
    for seed in args.seeds:
        settings, out_dir = arguments.resolve(parser, args.setting, seed, None)
        pipe = Pipeline(settings, out_dir, None)
        comparisons, heldout = pipe.artifact("reward", "comparisons"), pipe.artifact("reward", "comparisons_heldout")
        starts, own = {init: pipe.model(init) for _, _, init, _ in runs}, None   # each model loaded once a seed
        for name, change, init, offset in runs:
            cfg = replace(settings.reward, **change(settings.reward))
            start = time.perf_counter()
            set_seed(settings.seed + offset)   # as the reward stage does (offset 0)
            rm = RewardModel.from_language_model(starts[init])   # a copy: the loaded model is not trained
            train_reward_model(rm, pipe.tokenizer, comparisons, cfg, settings.seed + offset)
            train = pairwise_accuracy(rm, pipe.tokenizer, comparisons)["accuracy_gold"]
            held = pairwise_accuracy(rm, pipe.tokenizer, heldout)["accuracy_gold"]
            own = held if own is None else own
            print(f"{seed:>4}  {name:<32} {train:>6.3f} {held:>8.3f} {held - own:>+10.3f} "
                  f"{time.perf_counter() - start:>8.0f}", flush=True)


if __name__ == "__main__":
    main()
