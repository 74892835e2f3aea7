"""The main job end to end (fast setting), and the stage cache's resume behaviour."""
import json
from dataclasses import replace

import pytest

import minirlhf.pipeline as pipeline_module
from minirlhf.model import GPTConfig
from minirlhf.pipeline import Pipeline
from minirlhf.pretrain import PretrainConfig
from minirlhf.reward import RewardConfig
from minirlhf.rlhf import PPOConfig
from minirlhf.run import run
from minirlhf.settings import PRESETS, EvalConfig
from minirlhf.sft import SFTConfig
from minirlhf.world import WorldConfig

TINY = replace(PRESETS["fast"], name="tiny", world=WorldConfig(n_internet=200, n_demonstrations=20),
               model=GPTConfig(n_layer=1, n_head=2, n_embd=16), pretrain=PretrainConfig(steps=3, batch_size=4),
               sft=SFTConfig(epochs=0.2, batch_size=4), reward=RewardConfig(n_rankings=8, prompts_per_batch=4, epochs=1),
               ppo=PPOConfig(steps=1, batch_size=4, minibatch_size=2, epochs=1, max_new_tokens=4),
               eval=EvalConfig(samples_per_prompt=1, n_heldout_docs=10))


@pytest.fixture(scope="module")
def fast_metrics():
    """One fast run, in the shared stage cache (the notebooks reuse its stages)."""
    return run("fast")


def test_every_stage_improves_the_gold_score(fast_metrics):
    st = fast_metrics["stages"]
    assert st["sft"]["gold_score_mean"] > st["base"]["gold_score_mean"] + 0.05
    assert st["rlhf"]["gold_score_mean"] > st["sft"]["gold_score_mean"]
    assert fast_metrics["rlhf"]["win_rate_vs_sft"] > 0.5


def test_metrics_json_has_what_the_course_promises(fast_metrics):
    home = pipeline_module.default_home() / "fast"
    saved = json.loads((home / "metrics.json").read_text())
    for stage in ("base", "sft", "rlhf"):
        for key in ("gold_score_mean", "truthful_rate", "harmful_refusal_rate", "toxic_rate"):
            assert 0.0 <= saved["stages"][stage][key] <= 1.0
    assert {"win_rate_vs_sft", "kl_to_sft"} <= set(saved["rlhf"])
    assert "heldout_accuracy_gold" in saved["reward_model"]
    assert {"ppl_sft", "ppl_rlhf"} <= set(saved["alignment_tax"])
    assert {"pretrain", "sft", "reward_model", "ppo", "total"} <= set(saved["timing_s"])
    for f in ("report.md", "losses.png", "ppo.png", "stages.png"):
        assert (home / f).stat().st_size > 0


def test_reward_model_beats_chance_against_gold(fast_metrics):
    assert fast_metrics["reward_model"]["heldout_accuracy_gold"] > 0.6


def test_interrupted_run_resumes_from_the_last_finished_stage(tmp_path, monkeypatch):
    Pipeline(TINY, tmp_path).base_model()
    calls = []
    real_sft = pipeline_module.sft

    def interrupted(*a, **k):
        calls.append("sft")
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline_module, "sft", interrupted)
    with pytest.raises(KeyboardInterrupt):
        Pipeline(TINY, tmp_path).sft_model()
    assert not any(p.name.startswith("sft-") for p in tmp_path.iterdir()), "half-written stage left behind"

    def no_pretraining(*a, **k):
        raise AssertionError("the finished base stage was retrained")

    monkeypatch.setattr(pipeline_module, "pretrain", no_pretraining)
    monkeypatch.setattr(pipeline_module, "sft", real_sft)
    Pipeline(TINY, tmp_path).sft_model()
    assert calls == ["sft"]
    assert any(p.name.startswith("sft-") for p in tmp_path.iterdir())


def test_changed_settings_retrain_only_downstream(tmp_path):
    a = Pipeline(TINY, tmp_path)
    b = Pipeline(replace(TINY, sft=SFTConfig(epochs=0.4, batch_size=4)), tmp_path)
    assert a.stage_dir("base") == b.stage_dir("base")
    assert a.stage_dir("sft") != b.stage_dir("sft")
    assert a.stage_dir("reward") != b.stage_dir("reward")
