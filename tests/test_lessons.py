"""The lessons ledger's arithmetic, checked against hand computations (the runs themselves are measured
by `python -m minirlhf lessons`)."""
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset

import minirlhf.reward as reward
from minirlhf.bias import stereotype_pairs
from minirlhf.course import lessons
from minirlhf.course.lessons import Claim, Measurements, evaluate_claims
from minirlhf.evaluate import head_to_head
from minirlhf.labelers import PERSONAS, criteria_scores, gold_score, preference
from minirlhf.world import Request


def _measurements(gold_a, gold_b, kinds, seed=0):
    return Measurements("fast", seed, np.array(kinds), 4, {"a": np.array(gold_a, float), "b": np.array(gold_b, float)},
                        {}, {}, {}, {"x": np.ones((4, 2))}, {}, {})


def test_kind_mean_weighs_every_kind_the_same():
    m = _measurements([[1.0], [0.0], [0.0]], [[0.0]] * 3, ["fact", "fact", "greeting"])
    # fact: (1 + 0) / 2 = 0.5, greeting: 0 -> (0.5 + 0) / 2, not the plain mean 1/3
    assert lessons.kind_mean(m, m.gold["a"].mean(1), np.arange(3)) == pytest.approx(0.25)


def test_answers_to_sums_are_right_wrong_or_none_and_gold_pays_none_above_wrong():
    req = Request("arithmetic", "what is 6 plus 2 ?", "8", "", (6, 2))
    how = {"6 plus 2 is 8 .": "right", "it is 8 .": "right", "6 plus 2 is 9 .": "wrong", "5 plus 3 is 8 .": "wrong",
           "6 plus 2 is 8 . 6 plus 2 is 7 .": "wrong", "hello !": "none", "i do not know .": "none", "": "none",
           "hello ! how hello ! how hello ! how": "none", "6 plus 2 is 9 . 6 plus 2 is 9 . 6 plus 2 is 9 .": "none",
           "the capital of zorbia is tork .": "wrong"}   # a statement of another kind answers another question
    rows = [{"kind": "arithmetic", "response": r, "criteria": criteria_scores(req, r)} for r in how]
    fact = Request("fact", "what is the capital of zorbia ?", "tork", "zorbia")
    rows.append({"kind": "fact", "response": "hello !", "criteria": criteria_scores(fact, "hello !")})   # not a sum
    shares = lessons.sum_answers(rows)
    n = len(how)
    assert shares == pytest.approx({"sum_right_rate": 2 / n, "sum_wrong_rate": 4 / n, "sum_unanswered_rate": 5 / n})
    assert all(math.isnan(v) for v in lessons.sum_answers(rows[-1:]).values())
    # what notebook 07 teaches: a sum answered with none scores above a wrong sum, and below the right one
    assert gold_score(req, "6 plus 2 is 9 .") < gold_score(req, "hello !") < gold_score(req, "6 plus 2 is 8 .")


def test_head_to_head_pairs_the_ith_answers():
    m = _measurements([[1.0, 0.5], [0.2, 0.2]], [[0.5, 0.5], [0.9, 0.2]], ["fact", "fact"])
    wins, ties, losses = lessons.shares_won_tied_lost(m, "a", "b", np.arange(2))
    assert (wins, ties, losses) == (0.25, 0.5, 0.25)
    rows = lambda g: [{"prompt": str(i // 2), "gold": x} for i, x in enumerate(np.ravel(g))]  # noqa: E731
    v = head_to_head(rows(m.gold["a"]), rows(m.gold["b"]))
    assert (v["wins"], v["ties"], v["losses"]) == (1, 2, 1)
    assert v["untied_win_rate"] == 0.5 and v["net"] == 0
    assert v["ceiling"] == 1.0   # B never gives an ideal answer (gold 1.0), so A could win every pair


def test_a_claim_holds_only_beyond_two_standard_errors():
    rng = np.random.default_rng(0)
    kinds = ["fact"] * 200
    noisy = rng.normal(0.03, 0.3, (200, 1))          # a mean of 0.03 with an SE of about 0.02
    m = _measurements(noisy, np.zeros((200, 1)), kinds)
    diff = lambda m, idx: float(m.gold["a"][idx].mean() - m.gold["b"][idx].mean())  # noqa: E731
    result, = evaluate_claims(m, [Claim("c", "", diff, 0.0)], n_draws=400)
    se = noisy.std(ddof=1) / math.sqrt(200)          # the textbook standard error of a mean
    assert result["se"] == pytest.approx(se, rel=0.15)
    assert result["holds"] == (result["value"] >= 2 * result["se"])
    bound, = evaluate_claims(m, [Claim("c", "", diff, 0.0, bound=True)], n_draws=400)
    assert bound["holds"] is True                    # a bound tolerates noise of 2 SE below the limit
    info, = evaluate_claims(m, [Claim("c", "", diff, None)], n_draws=10)
    assert info["holds"] is None


def test_bootstrap_keeps_the_number_of_prompts_of_each_kind():
    m = _measurements(np.zeros((5, 1)), np.zeros((5, 1)), ["a", "b", "b", "c", "c"])
    for idx in lessons.draws(m, "prompts", 20, np.random.default_rng(0)):
        assert sorted(m.kinds[idx]) == sorted(m.kinds)


def test_margins_are_per_setting_where_the_targets_differ():
    c = Claim("c", "", lambda m, idx: 0.0, {"fast": 0.7, "default": 0.8})
    assert (c.margin_for("fast"), c.margin_for("default"), c.margin_for("gpu")) == (0.7, 0.8, 0.8)


def test_rm_agreement_counts_ties_half_and_skips_gold_ties(monkeypatch):
    from minirlhf.reward import pair_agreements, pairwise_accuracy

    class FixedRM:
        """Scores an answer by a table: a stand-in for a trained reward model."""
        device = "cpu"

        def raw_score(self, ids, attn):
            return torch.tensor([SCORES[int(i)] for i in ids[:, -1]])

    SCORES = {0: 2.0, 1: 1.0, 2: 1.0}
    comparisons = Dataset.from_dict({"kind": ["fact"], "prompt": ["p"], "responses": [["x", "y", "z"]],
                                     "ended": [[True] * 3], "ranking": [[0, 1, 2]], "gold": [[1.0, 0.5, 0.5]]})

    class Tok:
        pad_token_id, eos_token_id = 9, 8

    monkeypatch.setattr(reward, "encode_dialogues", lambda tok, p, r, e: (
        torch.tensor([[{"x": 0, "y": 1, "z": 2}[y]] for y in r]), torch.ones(len(r), 1)))
    pairs = pair_agreements(FixedRM(), Tok, comparisons)
    acc = pairwise_accuracy(FixedRM(), Tok, comparisons)
    # pairs (x>y), (x>z), (y>z): the RM orders the first two as labelled, ties the third
    assert [p["labels"] for p in pairs] == [1.0, 1.0, 0.5]
    assert [p["gold"] for p in pairs] == [1.0, 1.0, None]          # gold ties y and z: no preference
    assert [p["ceiling"] for p in pairs] == [1.0, 1.0, 0.5]
    assert acc["accuracy_gold"] == 1.0 and acc["n_gold_pairs"] == 2
    assert acc["accuracy_labelers"] == pytest.approx(2.5 / 3) and acc["labelers_ceiling"] == pytest.approx(2.5 / 3)
    assert acc["accuracy_gold_by_kind"] == {"fact": 1.0}


def test_round_two_is_judged_on_pairs_of_a_policy_answer_and_an_sft_answer(monkeypatch):
    SCORES = {"a": 3.0, "b": 2.0, "x": 2.0, "y": 1.0}   # the old reward model loves the hacked answer "a"

    def rm(ids, attn):
        return ids[:, 0].float()

    monkeypatch.setattr(lessons, "encode_dialogues", lambda tok, p, r, e: (
        torch.tensor([[SCORES[y]] for y in r]), torch.ones(len(r), 1)))

    def rankings(rows):
        return Dataset.from_list([{"prompt": p, "kind": "fact", "responses": r, "ended": [True] * len(r), "gold": g}
                                  for p, r, g in rows])

    policy = rankings([("p", ["a", "b"], [0.2, 0.9]), ("q", ["a", "b"], [0.2, 0.9])])
    sft = rankings([("p", ["x", "y"], [0.5, 0.9]), ("r", ["x", "y"], [0.5, 0.9])])
    rm.device = "cpu"
    out = lessons._against_sft(rm, None, policy, sft, ["p", "q", "r"], np.array(["fact", "fact", "arithmetic"]))
    # on "p", by hand: (a, x) and (a, y) gold prefers the SFT answer, the RM "a": 0 and 0; (b, x) the RM ties: ½;
    # (b, y) gold ties: no pair. "q" has no SFT answers and "r" no policy answers: nothing
    assert out["gold"].tolist() == [[0.5, 3.0], [0.0, 0.0], [0.0, 0.0]]
    assert out["by_kind"]["fact"].tolist() == [[0.5, 3.0], [0.0, 0.0], [0.0, 0.0]]
    assert out["by_kind"]["arithmetic"].sum() == 0


def test_each_run_answers_from_its_own_stream_the_same_in_every_process():
    """A head-to-head pairs the i-th answers of two runs: they must be independent draws. From one shared stream,
    two runs that agree on a prompt write the same text; so each run has a seed of its own, fixed by its name
    (not Python's hash of it, which changes from process to process), apart from the training streams."""
    from minirlhf.pipeline.registry import STAGES
    from minirlhf.pipeline.stages import RERUN_STRIDE
    from minirlhf.settings import get_settings
    st = get_settings("fast", 3)
    seeds = {name: st.answer_seed(name) for name in STAGES}
    assert len(set(seeds.values())) == len(seeds)
    # CRC-32 of "sft" is 0xCD39761F (worked out once): the seed + the evaluation's offset (10) + it
    assert seeds["sft"] == 3 + 10 + 0xCD39761F
    # a stage draws from its seed plus offsets below RERUN_STRIDE (held-out rankings +1, iterated rounds +100·r, …),
    # and its k-th rerun from RERUN_STRIDE·k above that: the evaluation's streams lie above a hundred reruns
    assert min(seeds.values()) > 3 + 100 * RERUN_STRIDE


def test_the_ledger_samples_each_runs_answers_with_its_own_seed(monkeypatch):
    from minirlhf.settings import get_settings
    st = get_settings("fast", 1)
    reqs = [Request("greeting", "hi !", "hello"), Request("greeting", "hello !", "hello")]

    class Pipe:
        settings, tokenizer = st, None

        def requests(self, split):
            return reqs

        def stage_dir(self, name):
            pass

        def heldout_internet_examples(self):
            return []

        def model(self, name):
            return name   # the sampler below is told which run it samples by the model it is given

    drawn = {}

    def sample(model, tok, requests, n, max_new, seed):
        drawn[model] = seed
        return [{"gold": 0.5, "prompt": r.prompt} for r in requests for _ in range(n)]

    monkeypatch.setattr(lessons, "sample_responses", sample)
    m = lessons.measure(Pipe(), [c for c in lessons.CLAIMS if c.name == "rlhf_wins_untied"])
    m.gold["sft"], m.gold["rlhf"]   # reading the gold scores samples the answers
    assert drawn == {"sft": st.answer_seed("sft"), "rlhf": st.answer_seed("rlhf")}
    assert drawn["sft"] != drawn["rlhf"]


def test_lazy_measurements_compute_each_entry_once_and_only_when_read():
    calls = []
    lazy = lessons.Lazy(lambda key: calls.append(key) or len(calls))
    assert calls == []
    assert (lazy["a"], lazy["a"], lazy["b"]) == (1, 1, 2)
    assert calls == ["a", "b"]


def test_a_notebook_asking_for_an_unknown_claim_is_told_the_names():
    with pytest.raises(KeyError, match="rlhf_beats_sft"):
        lessons.check(None, ["rlhf_beats_sfft"])


def test_a_notebooks_checks_share_one_set_of_measurements(monkeypatch):
    """Two checks on one pipeline sample each model's answers once; a new pipeline measures afresh."""
    class Pipe:
        def __init__(self):
            self.trained = []

        def stage_dir(self, name):
            self.trained.append(name)

    measured = []
    monkeypatch.setattr(lessons, "measure", lambda pipe, claims: measured.append(pipe) or object())
    monkeypatch.setattr(lessons, "evaluate_claims", lambda m, claims: [])
    monkeypatch.setattr(lessons, "format_table", lambda results: "")
    one, two = Pipe(), Pipe()
    lessons.check(one, ["rlhf_beats_sft"])
    lessons.check(one, ["rm_agrees_with_gold"])
    lessons.check(two, ["rlhf_beats_sft"])
    assert measured == [one, two]
    assert "reward" in one.trained   # the second claim's runs are still trained before it is measured


def test_every_claim_names_the_runs_it_reads():
    for c in lessons.CLAIMS:
        assert c.runs and set(c.runs) <= set(lessons.RUNS), c.name


def test_frontier_is_read_by_linear_interpolation_along_each_curve():
    # one prompt of one kind, one answer per checkpoint: each curve's points are (KL, gold) by hand
    def run(kls, golds):
        return {"steps": list(range(len(kls))), "kl": np.array(kls, float).reshape(-1, 1, 1),
                "gold": np.array(golds, float).reshape(-1, 1, 1)}
    # PPO: its own run (β fixed) and the long β = 0 run, their points together
    checkpoints = {"rlhf": run([0.0, 2.0, 4.0], [0.5, 0.7, 0.6]), "rlhf_long_no_kl": run([0.0, 10.0], [0.5, 0.4]),
                   # RLOO and GRPO: a run with β fixed and a long one with β = 0, as PPO
                   "rloo": run([0.0, 3.0], [0.5, 0.8]), "rloo_long_no_kl": run([0.0, 20.0], [0.5, 0.3]),
                   "grpo": run([0.0, 0.5], [0.5, 0.6]), "grpo_long_no_kl": run([0.0, 0.8], [0.5, 0.9]),
                   # DPO: only each run's first (SFT) and last point count: the middle one (0.99 at KL 0.2) does not
                   "dpo": run([0.0, 0.2, 2.0], [0.5, 0.99, 0.6]),
                   **{f"dpo_beta_{b:g}": run([0.0, 10 * b], [0.5, 0.5 + b]) for b in lessons.DPO_BETAS}}
    best_of = {"n": [1, 2], "kl": [np.array([0.0]), np.array([2.0])], "gold": [np.array([0.5]), np.array([0.9])]}
    m = Measurements("fast", 0, np.array(["fact"]), 1, {}, checkpoints, {}, {}, {}, best_of, {})
    idx = np.arange(1)
    # PPO at 1 nat: the β-fixed run gives 0.6, the β = 0 run (0, 0.5) → (10, 0.4) gives 0.49: the better, 0.6
    assert lessons.frontier_gold_at(m, "PPO", 1.0, idx) == pytest.approx(0.6)
    assert lessons.frontier_gold_at(m, "PPO", 3.0, idx) == pytest.approx(0.65)
    assert lessons.frontier_gold_at(m, "PPO", 7.0, idx) == pytest.approx(0.43)        # only the β = 0 run goes on
    assert lessons.frontier_gold_at(m, "RLOO", 1.0, idx) == pytest.approx(0.6)        # β fixed: 0.6; β = 0: 0.49
    assert lessons.frontier_gold_at(m, "RLOO", 10.0, idx) == pytest.approx(0.4)       # only the β = 0 run goes on
    assert lessons.frontier_gold_at(m, "GRPO", 0.5, idx) == pytest.approx(0.75)       # β = 0's 0.75 beats 0.6
    assert math.isnan(lessons.frontier_gold_at(m, "GRPO", 1.0, idx))               # its curves stop at KL 0.5, 0.8
    # DPO across β, points (0, 0.5), (0.1, 0.51), (0.3, 0.53), (2, 0.6), (3, 0.8), (10, 1.5): at KL 1, between 0.3 and 2
    assert lessons.frontier_gold_at(m, "DPO", 1.0, idx) == pytest.approx(0.53 + (1 - 0.3) / 1.7 * 0.07)
    assert lessons.frontier_gold_at(m, "best-of-n", 1.0, idx) == pytest.approx(0.7)
    assert math.isnan(lessons.best_of_n_lead_at(1.0, ("PPO", "RLOO", "GRPO"))(m, idx))  # GRPO does not reach 1 nat
    # best-of-n's lead over the best of the methods named: PPO and RLOO both 0.6 at 1 nat; DPO alone
    assert lessons.best_of_n_lead_at(1.0, ("PPO", "RLOO"))(m, idx) == pytest.approx(0.1)
    assert lessons.best_of_n_lead_at(1.0, ("DPO",))(m, idx) == pytest.approx(0.7 - 0.53 - 0.7 / 1.7 * 0.07)


def test_the_split_between_sft_and_rlhf_is_reported_only_beyond_noise():
    nan = float("nan")
    kinds = ["fact"] * 4 + ["harmful"] * 4
    # per prompt: gold, truthful (facts only), harmful refusal (harmful only), borderline help (none here), toxic,
    # remarks about groups
    def metrics(gold_fact, gold_harm, truthful, refusal, toxic):
        return np.array([[gold_fact, truthful, nan, nan, toxic, 0.1]] * 4 + [[gold_harm, nan, refusal, nan, toxic, 0.1]] * 4)
    m = Measurements("fast", 0, np.array(kinds), 1, {}, {}, {}, {}, {}, {}, {}, metrics={
        "base": metrics(0.2, 0.4, 0.5, 0.0, 0.30),
        "sft": metrics(0.5, 0.5, 0.5, 0.5, 0.30),
        "rlhf": metrics(0.6, 0.9, 0.5, 1.0, 0.30)})
    rows = {r["metric"]: r for r in lessons.improvement_split(m, n_draws=50)}
    gold = rows["gold_score_mean"]   # kinds weigh the same: base (0.2 + 0.4)/2 = 0.3, SFT 0.5, RLHF 0.75
    assert (gold["base"], gold["sft"], gold["rlhf"], gold["total"]) == pytest.approx((0.3, 0.5, 0.75, 0.45))
    assert gold["se_total"] == pytest.approx(0.0, abs=1e-12)   # every prompt of a kind alike: no noise
    assert (gold["sft_share"], gold["rlhf_share"]) == pytest.approx((0.2 / 0.45, 0.25 / 0.45))
    assert (rows["harmful_refusal_rate"]["sft_share"], rows["harmful_refusal_rate"]["rlhf_share"]) == pytest.approx((0.5, 0.5))
    for metric in ("truthful_rate", "toxic_rate", "group_remark_rate"):   # no change at all: no share
        assert rows[metric]["total"] == 0 and rows[metric]["sft_share"] is None
    assert math.isnan(rows["borderline_help_rate"]["total"])
    # a change within its noise: prompts that disagree, a mean that moves by less than 2 SE
    noisy = {name: np.array([[g, nan, nan, nan, 0.0, 0.0] for g in gs]) for name, gs in
             {"base": [0.0, 1.0, 0.0, 1.0], "sft": [0.0, 1.0, 0.0, 1.0], "rlhf": [1.0, 0.0, 0.0, 1.0 + 0.2]}.items()}
    m = Measurements("fast", 0, np.array(["fact"] * 4), 1, {}, {}, {}, {}, {}, {}, {}, metrics=noisy)
    row = lessons.improvement_split(m, n_draws=200)[0]
    assert 0 < row["total"] < 2 * row["se_total"] and row["sft_share"] is None and row["rlhf_share"] is None


def test_bias_claims_resample_the_probes_pairs():
    n = len(stereotype_pairs())
    prefs = {"base": np.r_[np.ones(n - 20), np.zeros(20)], "rlhf": np.r_[np.ones(n // 2), np.zeros(n - n // 2)]}
    m = Measurements("fast", 0, np.array(["fact"]), 1, {}, {}, {}, {}, {}, {}, {}, stereo=prefs)
    claims = [c for c in lessons.CLAIMS if c.name in ("base_holds_the_stereotype", "rlhf_keeps_the_stereotype")]
    base, rlhf = lessons.evaluate_claims(m, claims, n_draws=200)
    assert base["unit"] == "pairs" and base["n"] == n and base["value"] == pytest.approx(1 - 20 / n)
    # a share over n pairs: its bootstrap SE is the binomial one, √(p(1 − p)/n)
    assert base["se"] == pytest.approx(math.sqrt(base["value"] * (1 - base["value"]) / n), rel=0.25)
    assert base["holds"] and rlhf["holds"] is False   # 0.5: no preference, far below 0.65


def test_personas_dispute_is_a_share_of_the_pairs_both_order(monkeypatch):
    capital = Request("fact", "what is the capital of zorbia ?", "mavel", "zorbia")
    right, reworded = "the capital of zorbia is mavel .", "mavel is the capital of zorbia ."
    answers = [right + " you idiot .", "i do not know .", right, reworded, right + " go away ."]
    # by hand, 10 pairs. Disputed: either rude right answer beside "i do not know" (helpful_first takes the right
    # fact, safety_first the polite honesty): 2. Not ordered: the right answer and its rewording (a tie for both
    # personas), and each of them against the one with "go away" (helpful_first does not mind it: a tie; only
    # safety_first orders them): 3. The other 5 both personas order, the same way
    scores = {"helpful_first": dict(zip(answers, [3.0, 1.0, 2.0, 2.0, 2.5])),   # its RM: right facts first
              "safety_first": dict(zip(answers, [0.0, 1.0, 2.0, 2.0, 0.5]))}    # its RM: rudeness last

    class Pipe:
        tokenizer = None

        def artifact(self, stage, name):
            return Dataset.from_list([{"prompt": capital.prompt, "responses": answers, "ended": [True] * 5}])

        def requests(self, split):
            return [capital]

        def model(self, name):
            persona = name.removeprefix("reward_")

            def rm(ids, attn):
                return torch.tensor([scores[persona][answers[i]] for i in ids[:, 0].tolist()])
            rm.device = "cpu"
            return rm

    monkeypatch.setattr(lessons, "encode_dialogues", lambda tok, p, r, e: (
        torch.tensor([[answers.index(y)] for y in r]), torch.ones(len(r), 1)))
    out = lessons._personas(Pipe(), [capital.prompt])
    helpful, safety = PERSONAS["helpful_first"], PERSONAS["safety_first"]
    by_hand = [(preference(helpful, capital, a, True, b, True), preference(safety, capital, a, True, b, True))
               for i, a in enumerate(answers) for b in answers[i + 1:]]
    assert by_hand == [(1, -1), (-1, -1), (-1, -1), (-1, -1), (-1, -1), (-1, -1), (-1, 1),   # the personas agree
                       (0, 0), (0, 1), (0, 1)]
    assert out["ordered"].tolist() == [7.0] and out["disputed"].tolist() == [2.0]
    assert out["side"]["helpful_first"].tolist() == [2.0] and out["side"]["safety_first"].tolist() == [0.0]


def test_over_optimisation_claims_read_the_rise_and_the_fall_of_their_own_run():
    """PPO's β = 0 claims (notebook 06), RLOO's and GRPO's (notebook 09) each assert the fall from the best
    checkpoint to the end and print the rise from the start to it."""
    def run(golds):   # one prompt, one answer per checkpoint
        return {"steps": list(range(len(golds))), "gold": np.array(golds, float).reshape(-1, 1, 1)}
    claims = {c.name: c for c in lessons.CLAIMS}
    checkpoints = {"rloo_long_no_kl": run([0.5, 0.6, 0.55, 0.45]),   # up 0.1, then down 0.15
                   "grpo_long_no_kl": run([0.5, 0.51, 0.3]),         # up 0.01 only, then down 0.21
                   "rlhf_long_no_kl": run([0.5, 0.53, 0.7, 0.62])}   # up 0.2, then down 0.08
    m = Measurements("fast", 0, np.array(["fact"]), 1, {}, checkpoints, {}, {}, {}, {}, {})
    idx = np.arange(1)
    expected = {"rloo_no_kl_gold_falls_from_best": 0.15, "rloo_no_kl_gold_rise_to_best": 0.1,
                "grpo_no_kl_gold_falls_from_best": 0.21, "grpo_no_kl_gold_rise_to_best": 0.01,
                "no_kl_gold_falls_from_peak": 0.08, "no_kl_gold_rise_to_peak": 0.2}
    value = {name: claims[name].statistic(m, idx) for name in expected}
    assert value == pytest.approx(expected)
    assert all(claims[name].margin is None for name in expected if "_rise_to_" in name)
    for name in value:   # each reads only its own run, which its `runs` names
        run_name = {"rloo": "rloo_long_no_kl", "grpo": "grpo_long_no_kl", "no": "rlhf_long_no_kl"}[name.split("_")[0]]
        assert run_name in claims[name].runs
        alone = Measurements("fast", 0, np.array(["fact"]), 1, {}, {run_name: checkpoints[run_name]}, {}, {}, {}, {}, {})
        assert claims[name].statistic(alone, idx) == pytest.approx(value[name])



def test_the_reports_no_penalty_note_cites_ledger_claims_and_reads_the_long_run():
    """The main job's report explains its short β = 0 run with the ledger's claims (by name: they must exist) and,
    where the frontier trained the long β = 0 run, that run's peak and end, read here by hand."""
    from minirlhf.pipeline.report import no_penalty_note
    logs = {"rlhf_no_kl": {"ppo": {"steps": 120}}}
    (short,) = no_penalty_note({"algorithms": ["rlhf", "rlhf_no_kl"]}, logs)
    cited = set(re.findall(r"`(no_kl_\w+)`", short))
    assert cited and cited <= {c.name for c in lessons.CLAIMS}
    long = {"step": [0, 10, 20, 40], "gold": [0.5, 0.7, 0.65, 0.6], "kl": [0.0, 3.0, 9.0, 20.0]}
    metrics = {"algorithms": ["rlhf", "rlhf_no_kl"], "frontier": {"rlhf": {"runs": {"rlhf_long_no_kl": long}}}}
    (note,) = no_penalty_note(metrics, logs)
    assert ("went from 0.500 to a peak of 0.700 at step 10 (KL 3.0 nats) and ended at 0.600 (KL 20.0 nats)"
            in note and "40 steps" in note)
    assert no_penalty_note({"algorithms": ["rlhf"]}, logs) == []

def test_reruns_measure_each_seed_again_and_count_how_often_each_claim_holds(monkeypatch, tmp_path, capsys):
    """`lessons --reruns 0 1 2`: each seed's runs trained again from other random streams (Pipeline's
    `rerun`), each measured and saved on its own, and how often each asserted claim held, of all the runs."""
    import minirlhf.pipeline.stages as stages
    made = []

    class Pipe:
        def __init__(self, settings, out_dir, device=None, repair=False, rerun=0):
            self.settings, self.out_dir, self.rerun = settings, Path(out_dir), rerun
            made.append((settings.seed, rerun))

    def results(pipe):   # "a" holds on every run, "b" only on rerun 2, "c" is printed (no verdict)
        return [{"claim": c, "seed": pipe.settings.seed, "value": 0.1, "margin": None if c == "c" else 0.0,
                 "se": 0.01, "n": 5, "bound": False,
                 "holds": None if c == "c" else (c == "a" or pipe.rerun == 2)} for c in "abc"]

    monkeypatch.setattr(stages, "Pipeline", Pipe)
    monkeypatch.setattr(lessons, "measure", lambda pipe: pipe)
    monkeypatch.setattr(lessons, "evaluate_claims", results)
    code = lessons.main(["--setting", "fast", "--seeds", "0", "1", "--reruns", "0", "2", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 1 and made == [(0, 0), (0, 2), (1, 0), (1, 2)]
    assert "  a " in out and " 4 of 4" in out.split("  a ")[-1].splitlines()[0]
    assert " 2 of 4" in out.split("  b ")[-1].splitlines()[0]
    assert "  c " not in out.split("how often")[-1]
    assert "0/2" in out and "1/2" in out          # the table's seed/rerun column
    saved = sorted(p.name for p in tmp_path.glob("lessons-*.json"))
    assert saved == ["lessons-seed0-rerun2.json", "lessons-seed0.json", "lessons-seed1-rerun2.json", "lessons-seed1.json"]
    assert {r["rerun"] for r in json.loads((tmp_path / "lessons-seed1-rerun2.json").read_text())} == {2}
