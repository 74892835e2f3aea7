"""The main job end to end (fast setting), and the house it stands on: the stage cache's keys (in both
directions: nothing stale reused, nothing unaffected retrained), resuming, honest times, one training
per stage when two runs share a cache, and the registry (a new algorithm is one registry line)."""
import json
import subprocess
import sys
import threading
import time
from dataclasses import fields, is_dataclass, replace
from pathlib import Path

import pytest

import minirlhf.pipeline.registry as registry
from minirlhf.pipeline import Pipeline, cache, default_home
from minirlhf.pipeline.main import run
from minirlhf.settings import PRESETS
from tiny import TINY


@pytest.fixture(scope="module")
def fast_metrics():
    """One fast run with the frontier's runs (`--frontier`), in the shared stage cache (the notebooks reuse its
    stages: notebook 09 those of the frontier)."""
    return run("fast", frontier=True)


def test_every_stage_improves_the_gold_score(fast_metrics):
    st = fast_metrics["stages"]
    assert st["sft"]["gold_score_mean"] > st["base"]["gold_score_mean"] + 0.05
    assert st["rlhf"]["gold_score_mean"] > st["sft"]["gold_score_mean"]
    assert st["rlhf"]["win_rate_vs_sft"] > 0.5


def test_the_report_and_the_ledger_pair_the_same_answers_each_from_its_own_stream(fast_metrics):
    """The main job's head-to-head of RLHF against SFT counts the very answers the ledger reads, each run's drawn
    from its own stream (Settings.answer_seed): one shared seed would give other answers, and other counts."""
    from minirlhf.course import lessons
    from minirlhf.evaluate import head_to_head
    answers = lessons.measured(Pipeline(PRESETS["fast"]), ["sft", "rlhf"]).answers
    ours, reported = head_to_head(answers["rlhf"], answers["sft"]), fast_metrics["stages"]["rlhf"]["vs_sft"]
    assert [ours[k] for k in ("wins", "ties", "losses")] == [reported[k] for k in ("wins", "ties", "losses")]


def test_metrics_json_has_what_the_course_promises(fast_metrics):
    home = default_home() / "fast"
    saved = json.loads((home / "metrics.json").read_text())
    for stage in ("base", "sft", "rlhf", "rlhf_no_kl"):
        for key in ("gold_score_mean", "truthful_rate", "harmful_refusal_rate", "toxic_rate"):
            assert 0.0 <= saved["stages"][stage][key] <= 1.0
    assert set(saved["algorithms"]) == {"rlhf", "rlhf_no_kl", "dpo", "rloo", "grpo", "bon"}
    for algo in saved["algorithms"]:
        assert {"win_rate_vs_sft", "kl_to_sft"} <= set(saved["stages"][algo])
    for algo in ("rlhf", "rlhf_no_kl", "rloo", "grpo"):   # RL: where the proxy and gold started and ended
        assert {"rm_score_first", "gold_last"} <= set(saved["stages"][algo]["training"])
    # the frontier: ≥ 5 points per algorithm, the best-of-n KLs within the bound, a fit with its R²
    front = saved["frontier"]
    assert set(front) == {"rlhf", "dpo", "rloo", "grpo", "bon"}
    for algo, f in front.items():
        assert sum(len(p["kl"]) for p in f["runs"].values()) >= 5, algo
        assert f["fit"]["n_points"] >= 6 and f["fit"]["r2"] <= 1.0, algo
    assert all(k <= b + 1e-9 for k, b in zip(front["bon"]["runs"]["bon"]["kl"], front["bon"]["kl_bound"]))
    assert max(k for p in front["rlhf"]["runs"].values() for k in p["kl"]) > 10 * saved["stages"]["rlhf"]["kl_to_sft"]
    assert "heldout_accuracy_gold" in saved["reward_model"]
    assert {"ppl_base", "ppl_sft", "ppl_rlhf"} <= set(saved["alignment_tax"])
    assert {"world", "base", "sft", "reward", "rlhf", "evaluation", "this_run"} <= set(saved["timing_s"])
    for f in ("report.md", "losses.png", "ppo.png", "stages.png", "frontier.png"):
        assert (home / f).stat().st_size > 0
    # the threads the results were computed with and the processes (the tests pin 1 and 1: conftest.py)
    assert saved["threads"] == 1 and saved["jobs"] == 1
    assert "(1 CPU thread a process, 1 process)" in (home / "report.md").read_text().splitlines()[0]


def test_the_report_says_where_the_short_beta_0_run_stopped(fast_metrics):
    """As many steps as `rlhf` without a penalty can end above it on gold (fast seed 0, 60 steps at 1e-4: 0.803
    against 0.760): the report points at the long β = 0 run's peak and end, read here from the frontier's points."""
    long = fast_metrics["frontier"]["rlhf"]["runs"]["rlhf_long_no_kl"]
    gold = long["gold"]
    peak = gold.index(max(gold))
    report = (default_home() / "fast" / "report.md").read_text()
    line = next(line for line in report.splitlines() if line.startswith("- `rlhf_no_kl` trains"))
    assert f"a peak of {gold[peak]:.3f} at step {long['step'][peak]}" in line and f"ended at {gold[-1]:.3f}" in line


def test_reward_model_beats_chance_against_gold(fast_metrics):
    assert fast_metrics["reward_model"]["heldout_accuracy_gold"] > 0.6


# -- the cache's keys: exactly the stages that read a thing change when it changes ---------------

CHECKED = ["world", "base", "sft", "reward", "rlhf", "rlhf_no_kl", "reward_round2", "rlhf_round2",
           "dpo", "rloo", "grpo", "bon"]
RL = {"rlhf", "rlhf_no_kl", "reward_round2", "rlhf_round2"}   # round 2 starts from the rlhf policy
GROUP = {"rloo", "grpo"}                                       # group-baseline RL: rollouts and PPO's clipped loss
AFTER_PPO = {"dpo", "bon"} | GROUP                             # notebook 09: from SFT and the reward stage
AFTER_REWARD = {"reward"} | RL | AFTER_PPO
ALL, AFTER_BASE, AFTER_SFT = set(CHECKED), set(CHECKED) - {"world"}, set(CHECKED) - {"world", "base"}
# written by hand from what each recipe runs (not computed from the code under test); every RL and notebook-09
# stage watches its policy on held-out prompts (heldout.py, which measures the KL with evaluate.py)
MODULE_READERS = {
    "world": ALL, "tokenizer": AFTER_BASE, "model": AFTER_BASE, "checkpoint": AFTER_BASE,
    "packing": AFTER_BASE, "training": AFTER_BASE, "logprobs": AFTER_BASE, "masks": AFTER_BASE,
    "pretrain": AFTER_BASE,
    "sft": AFTER_SFT, "labelers": AFTER_REWARD, "generate": AFTER_REWARD, "sampling": AFTER_REWARD,
    "comparisons": AFTER_REWARD, "reward": AFTER_REWARD,
    "kl": RL | AFTER_PPO, "evaluate": RL | AFTER_PPO, "heldout": RL | AFTER_PPO,
    "ppo": RL | GROUP, "rollout": RL | GROUP, "rlhf": RL,
    "dpo": {"dpo"}, "group_rl": GROUP, "rloo": {"rloo"}, "grpo": {"grpo"}, "best_of_n": {"bon"},
}
SETTING_READERS = {"world": ALL, "model": AFTER_BASE, "pretrain": AFTER_BASE, "sft": AFTER_SFT,
                   "reward": AFTER_REWARD, "ppo": RL | GROUP, "ppo.no_end_score": RL | AFTER_PPO,
                   "dpo": {"dpo"}, "eval.max_new_tokens": AFTER_REWARD,
                   # notebook 09's curves answer each held-out prompt as often as the evaluation does: RLHF's
                   # own run is one (and round 2 starts from it), RLHF without KL is not
                   "eval.samples_per_prompt": {"dpo"} | GROUP | RL - {"rlhf_no_kl"}}


def _keys(settings, home):
    pipe = Pipeline(settings, home)
    return {name: pipe.key(name) for name in CHECKED}


def _package_modules():
    root = cache.PACKAGE_DIR
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_each_module_retrains_exactly_the_stages_that_read_it(monkeypatch, tmp_path):
    baseline = _keys(TINY, tmp_path)
    real = cache.read_source
    modules = list(_package_modules())
    assert len(modules) > 25
    for module in modules:
        monkeypatch.setattr(cache, "read_source", lambda m, target=module: real(m) + (b"\n_edited = 1\n" if m == target else b""))
        changed = {name for name, key in _keys(TINY, tmp_path).items() if key != baseline[name]}
        short = module.removeprefix("minirlhf.")
        assert changed == MODULE_READERS.get(short, set()), f"editing {module} changed the keys of {sorted(changed)}"
    # a comment or a blank line is no change of code: nothing retrains
    monkeypatch.setattr(cache, "read_source", lambda m: real(m) + b"\n\n# a comment\n")
    assert _keys(TINY, tmp_path) == baseline
    monkeypatch.setattr(cache, "read_source", real)


def test_every_registered_stage_has_a_key(tmp_path):
    pipe = Pipeline(TINY, tmp_path)
    keys = {name: pipe.key(name) for name in registry.STAGES}
    assert len(set(keys.values())) == len(keys), "in this setting every registered stage reads something else"


def test_code_edited_after_import_is_refused_rather_than_trained_under_the_new_key(tmp_path, monkeypatch):
    import minirlhf

    monkeypatch.setattr(minirlhf, "IMPORTED_AT", 0.0)   # as if every file had been edited since
    with pytest.raises(RuntimeError, match=r"world\.py changed after this Python process imported minirlhf"):
        Pipeline(TINY, tmp_path).stage_dir("world")


def _changed(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value * 2 if value else 1
    if isinstance(value, float):
        return value + 0.5 if value < 0.5 else value / 2
    if value is None:
        return 0.5
    raise AssertionError(f"no rule to change {value!r}")


def _variants(settings):
    """(section, field, Settings with that one field changed) for every field of every config."""
    for section in ("world", "model", "pretrain", "sft", "reward", "ppo", "dpo", "eval"):
        cfg = getattr(settings, section)
        for f in fields(cfg):
            value = getattr(cfg, f.name)
            if is_dataclass(value):   # the internet's style: each of its fields
                for g in fields(value):
                    inner = replace(value, **{g.name: _changed(getattr(value, g.name))})
                    yield section, f"{f.name}.{g.name}", replace(settings, **{section: replace(cfg, **{f.name: inner})})
            else:
                yield section, f.name, replace(settings, **{section: replace(cfg, **{f.name: _changed(value)})})


def test_each_setting_retrains_exactly_the_stages_that_read_it(tmp_path):
    baseline = _keys(TINY, tmp_path)
    n = 0
    for section, name, variant in _variants(TINY):
        changed = {stage for stage, key in _keys(variant, tmp_path).items() if key != baseline[stage]}
        expected = SETTING_READERS.get(f"{section}.{name}", SETTING_READERS.get(section) if section != "eval" else set())
        if (section, name) == ("ppo", "kl_coef"):
            expected = RL - {"rlhf_no_kl"} | GROUP   # the β = 0 run sets its own β: it does not read this one
        assert changed == expected, f"changing {section}.{name} changed the keys of {sorted(changed)}"
        n += 1
    assert n > 50
    changed = {s for s, k in _keys(TINY.with_seed(1), tmp_path).items() if k != baseline[s]}
    assert changed == ALL, "another seed is another world: every stage"
    assert _keys(replace(TINY, frontier=not TINY.frontier), tmp_path) == baseline, "what the main job plots trains nothing"
    # γ_ptx is a setting of its own, read by PPO-ptx alone (each setting picks it: settings.py)
    ptx = replace(TINY, ptx_coef=TINY.ptx_coef * 2)
    assert _keys(ptx, tmp_path) == baseline, "γ_ptx changed the keys of stages that have no ptx term"
    assert Pipeline(ptx, tmp_path).key("rlhf_ptx") != Pipeline(TINY, tmp_path).key("rlhf_ptx")
    assert registry.STAGES["rlhf_ptx"].args["cfg"].resolve(ptx).ptx_coef == 2 * TINY.ptx_coef > 0


def test_a_rerun_trains_every_stage_again_in_the_same_world(tmp_path):
    """`lessons --reruns`: rerun 0 is the setting's own run, key for key; another rerun keeps the world (its
    requests and data sets) and trains every other stage from other random streams, each its own."""
    own = _keys(TINY, tmp_path)
    rerun0 = Pipeline(TINY, tmp_path, rerun=0)
    assert {name: rerun0.key(name) for name in CHECKED} == own
    reruns = [Pipeline(TINY, tmp_path, rerun=r) for r in (1, 2)]
    for pipe in reruns:
        changed = {name for name in CHECKED if pipe.key(name) != own[name]}
        assert changed == ALL - {"world"}, f"rerun {pipe.rerun} retrains {sorted(changed)}"
    assert all(reruns[0].key(name) != reruns[1].key(name) for name in CHECKED if name != "world")
    # no random stream of one rerun is another's: every stage seeds its streams with its seed plus at most
    # 3,000 + 200 + 10 (comparisons.py's third resampling round, in round 2's reward model, and heldout.py)
    spans = {r: [(p.seed_of(n), p.seed_of(n) + 3210) for n in registry.STAGES if n != "world"]
             for r, p in enumerate([rerun0, *reruns])}
    for r in spans:
        for q in spans:
            if r < q:
                assert all(b1 < a2 or b2 < a1 for a1, b1 in spans[r] for a2, b2 in spans[q]), (r, q)
    # the rounds of iterated RLHF keep their own streams apart in a rerun too
    assert reruns[0].seed_of("reward_round2") - reruns[0].seed_of("reward") == 2 * registry.ITERATED_SEED_OFFSET
    with pytest.raises(ValueError, match="a rerun is a number ≥ 0"):
        Pipeline(TINY, tmp_path, rerun=-1)
    # a damaged stage of a rerun names the command that rebuilds that rerun's, not the setting's own
    hint = Pipeline("fast", tmp_path, rerun=2).repair_hint("sft")
    assert f"lessons --setting fast --seeds 0 --reruns 2 --out {tmp_path}" in hint


def test_stages_that_read_the_same_things_share_one_folder(tmp_path):
    # the same recipe with the same arguments, however they are spelled, is one stage: the β-fixed run
    # of notebook 06 with as many held-out checkpoints as the main job's run is that run in a setting whose
    # PPO runs are as long as LONG_STEPS, at a constant learning rate of LONG_LR
    long = registry.STAGES["rlhf_long"]
    args = {**long.args, "heldout_checkpoints": registry.CHECKPOINTS}
    registry.register("rlhf_long_as_rlhf", long.recipe, **args)
    try:
        default = PRESETS["default"]
        pipe = Pipeline(replace(default, ppo=replace(default.ppo, steps=registry.LONG_STEPS, lr=registry.LONG_LR,
                                                     anneal_lr=False)), tmp_path)
        assert pipe.key("rlhf_long_as_rlhf") == pipe.key("rlhf")
        assert pipe.key("rlhf_long") != pipe.key("rlhf")    # the checkpoints (8, not 6) are part of what it makes
    finally:
        registry.STAGES.pop("rlhf_long_as_rlhf")
    fast = Pipeline("fast", tmp_path)
    assert fast.key("rlhf_long") != fast.key("rlhf")
    # a stage is keyed on what it reads, not on what it is called: the same line under another name
    sft, reward = registry.STAGES["sft"], registry.STAGES["reward"]
    registry.register("sft_copy", sft.recipe, **sft.args)
    registry.register("reward_of_copy", reward.recipe, **{**reward.args, "sft_model": registry.Upstream("sft_copy")})
    try:
        assert Pipeline("fast", tmp_path).key("reward_of_copy") == fast.key("reward")
    finally:
        registry.STAGES.pop("reward_of_copy"), registry.STAGES.pop("sft_copy")


# -- building: resume, honest times, one writer ----------------------------------------------------

def test_interrupted_run_resumes_from_the_last_finished_stage(tmp_path, monkeypatch):
    import minirlhf.pretrain
    import minirlhf.sft

    Pipeline(TINY, tmp_path).stage_dir("base")
    calls = []
    real_sft = minirlhf.sft.sft

    def interrupted(*a, **k):
        calls.append("sft")
        raise KeyboardInterrupt

    monkeypatch.setattr(minirlhf.sft, "sft", interrupted)
    with pytest.raises(KeyboardInterrupt):
        Pipeline(TINY, tmp_path).model("sft")
    assert not any(p.name.startswith("sft-") or (p.name.startswith(".sft-") and p.is_dir())
                   for p in tmp_path.iterdir()), "half-written stage left behind"

    def no_pretraining(*a, **k):
        raise AssertionError("the finished base stage was retrained")

    monkeypatch.setattr(minirlhf.pretrain, "pretrain", no_pretraining)
    monkeypatch.setattr(minirlhf.sft, "sft", real_sft)
    pipe = Pipeline(TINY, tmp_path)
    pipe.model("sft")
    assert calls == ["sft"] and pipe.built == ["sft"]


def test_each_stage_records_only_its_own_training_time(tmp_path, monkeypatch):
    import minirlhf.pretrain

    real = minirlhf.pretrain.pretrain

    def slow_pretraining(*a, **k):
        time.sleep(1.0)
        return real(*a, **k)

    monkeypatch.setattr(minirlhf.pretrain, "pretrain", slow_pretraining)
    pipe = Pipeline(TINY, tmp_path)
    pipe.model("sft")                      # builds world and base inside
    assert pipe.built == ["world", "base", "sft"]
    assert pipe.log("base")["seconds"] >= 1.0
    assert pipe.log("sft")["seconds"] < 0.9, "SFT's time must not include the base model it waited for"


def test_two_builders_of_one_stage_train_it_once(tmp_path):
    trained = []

    def build(tmp):
        trained.append(1)
        time.sleep(0.5)
        (tmp / "weights").write_text("w")
        return {}

    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.build_or_load(tmp_path, "s", {"a": 1}, {}, [], build)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(trained) == 1 and sorted(built for _, built in results) == [False, True]
    assert len({path for path, _ in results}) == 1 and (results[0][0] / "weights").read_text() == "w"
    assert not [p for p in Path(tmp_path).iterdir() if p.is_dir() and p.name.startswith(".")]


def test_two_main_jobs_started_together_train_each_stage_once_and_agree(tmp_path):
    """What `python -m minirlhf run` does twice at once on one cache, in the TINY setting."""
    script = (f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
              "from tiny import TINY\nfrom minirlhf.pipeline.main import run\n"
              "m = run(TINY, sys.argv[1], algorithm_names=['ppo', 'dpo'])\n"
              "json.dump({k: v for k, v in m.items() if k not in ('timing_s', 'built_this_run')}, open(sys.argv[2], 'w'))")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "cache"), str(tmp_path / f"m{i}.json")],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    trained = [line.split()[2] for out in outputs for line in out.splitlines() if line.startswith("[minirlhf] training ")]
    assert len(trained) == len(set(trained)) == 6, f"trained twice: {sorted(trained)}"
    assert json.loads((tmp_path / "m0.json").read_text()) == json.loads((tmp_path / "m1.json").read_text())
    assert json.loads((tmp_path / "cache" / "metrics.json").read_text())["stages"], "the report is whole"
    assert not [p for p in (tmp_path / "cache").iterdir() if p.is_dir() and p.name.startswith(".")]


# -- the registry: a new algorithm is one file and one line ----------------------------------------

def dummy_stage(policy, seed):
    """An "algorithm" that returns the SFT model unchanged."""
    return {"model": policy, "log": {"note": f"dummy, seed {seed}"}}


def test_a_registered_algorithm_reaches_metrics_report_and_cli(tmp_path):
    from minirlhf.__main__ import build_parser

    registry.register("dummy", dummy_stage, policy=registry.Upstream("sft"), algorithm=True, title="Dummy")
    try:
        assert build_parser().parse_args(["run", "--algorithms", "dummy"]).algorithms == ["dummy"]
        # the algorithms' own names work too: ppo is the stage "rlhf", best_of_n the stage "bon"
        assert build_parser().parse_args(["run", "--algorithms", "ppo", "best_of_n"]).algorithms == ["ppo", "best_of_n"]
        assert [registry.ALIASES[a] for a in ("ppo", "best_of_n")] == ["rlhf", "bon"]
        metrics = run(TINY, tmp_path)
        assert "dummy" in metrics["algorithms"]
        saved = json.loads((tmp_path / "metrics.json").read_text())
        dummy = saved["stages"]["dummy"]
        assert dummy["kl_to_sft"] == pytest.approx(0.0, abs=1e-5), "the SFT model itself: no KL to SFT"
        # the SFT model's own answers, drawn from the dummy's own stream (Settings.answer_seed), not from SFT's
        from minirlhf.evaluate import stage_metrics
        from minirlhf.sampling import sample_responses
        pipe = Pipeline(TINY, tmp_path)
        rows = sample_responses(pipe.model("sft"), pipe.tokenizer, pipe.requests("eval"), TINY.eval.samples_per_prompt,
                                TINY.eval.max_new_tokens, seed=TINY.answer_seed("dummy"))
        assert dummy["gold_score_mean"] == stage_metrics(rows)["gold_score_mean"]
        report = (tmp_path / "report.md").read_text()
        assert "| dummy |" in report and "Dummy (`dummy`)" in report
        assert "cached, built earlier" not in report and set(saved["built_this_run"]) >= {"base", "sft", "dummy"}
        again = run(TINY, tmp_path, algorithm_names=["dummy"])
        assert again["built_this_run"] == [] and again["algorithms"] == ["dummy"]
        assert "cached, built earlier" in (tmp_path / "report.md").read_text()
    finally:
        registry.STAGES.pop("dummy")


def test_unknown_stage_and_algorithm_names_are_errors_that_list_the_valid_ones(tmp_path):
    with pytest.raises(KeyError, match="registered stages: world, base"):
        Pipeline(TINY, tmp_path).model("rlfh")
    with pytest.raises(ValueError, match="registered"):
        run(TINY, tmp_path, algorithm_names=["ppo2"])


def test_old_import_paths_still_work_with_a_deprecation_message():
    import subprocess
    import sys

    code = ("import warnings; warnings.simplefilter('always')\n"
            "with warnings.catch_warnings(record=True) as w:\n"
            "    from minirlhf.checks import check_gae\n"
            "    from minirlhf.checks.core import POINTS\n"
            "    from minirlhf.grading import grade\n"
            "    from minirlhf.exercises import make_exercises\n"
            "print(sorted({str(x.message).split()[0] for x in w if x.category is FutureWarning}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['minirlhf.checks', 'minirlhf.exercises', 'minirlhf.grading']"
