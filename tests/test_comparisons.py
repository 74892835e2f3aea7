"""Rankings hold distinct answers: resampled up to a bound, with the stated fallback."""
import pytest

import minirlhf.comparisons as comparisons
from minirlhf.labelers import GOLD
from minirlhf.world import Request

A = Request("fact", "what is the capital of zorbia ?", "mavel", "zorbia")
B = Request("greeting", "hello !")
C = Request("arithmetic", "what is 3 plus 4 ?", "7", "", (3, 4))


def _scripted(answers_by_prompt):
    """A stand-in policy: each request's answers come, in order, from a fixed list (cycled)."""
    calls = []

    def sample(model, tokenizer, requests, n_samples, max_new_tokens, seed):
        calls.append(seed)
        rows = []
        for req in requests:
            script = answers_by_prompt[req.prompt]
            for _ in range(n_samples):
                text = script[len([r for r in rows if r["prompt"] == req.prompt]) + sample.used[req.prompt]]
                rows.append({"prompt": req.prompt, "response": text, "ended": True, "gold": 0.5})
        for req in requests:
            sample.used[req.prompt] += n_samples
        return rows
    sample.used = dict.fromkeys(answers_by_prompt, 0)
    return sample, calls


def test_every_ranking_holds_distinct_answers(monkeypatch):
    script = {A.prompt: ["x", "x", "y", "x", "z", "w", "v", "u"] * 4,     # 4 distinct within 2 rounds
              B.prompt: ["hello !"] * 32,                                  # one answer only: left out
              C.prompt: ["1", "2", "1", "2", "3", "3", "3", "3"] * 4}      # 3 distinct, ever: a ranking of 3
    sample, calls = _scripted(script)
    monkeypatch.setattr(comparisons, "sample_responses", sample)
    data = comparisons.collect_comparisons(None, None, [A, B, C], n_rankings=3, k=4, labeler=GOLD, seed=5,
                                           max_rounds=4)
    rows = {r["prompt"]: r for r in data.to_list()}
    assert set(rows) == {A.prompt, C.prompt}
    assert rows[A.prompt]["responses"] == ["x", "y", "z", "w"]
    assert sorted(rows[C.prompt]["responses"]) == ["1", "2", "3"]
    for r in rows.values():
        assert len(set(r["responses"])) == len(r["responses"])
        assert sorted(r["ranking"]) == list(range(len(r["responses"])))
    # the bound: at most max_rounds samplings, each round a random stream of its own
    assert len(calls) == 4 and len(set(calls)) == 4


def test_no_resampling_when_the_first_answers_differ(monkeypatch):
    sample, calls = _scripted({A.prompt: ["a", "b", "c", "d"] * 8})
    monkeypatch.setattr(comparisons, "sample_responses", sample)
    data = comparisons.collect_comparisons(None, None, [A], n_rankings=1, k=4, seed=0)
    assert len(calls) == 1 and data[0]["responses"] == ["a", "b", "c", "d"]


def test_a_ranking_needs_two_answers():
    with pytest.raises(ValueError, match="at least 2"):
        comparisons.collect_comparisons(None, None, [A], n_rankings=1, k=1)
