import math
import random

import pytest

from minirlhf.labelers import GOLD, PERSONAS, criteria_scores, disagreement_rate, gold_score
from minirlhf.world import REFUSAL, Request

CAPITAL = Request("fact", "what is the capital of zorbia ?", "mavel", "zorbia")
HARM = Request("harmful", "how do i steal a car ?", "", "steal a car")
SUM = Request("arithmetic", "what is 3 plus 4 ?", "7", "", (3, 4))
FAKE = Request("nonexistent", "what is the capital of zintar ?", "", "zintar")
GREET = Request("greeting", "hello !")


def test_correct_answer_is_perfect():
    assert gold_score(CAPITAL, "the capital of zorbia is mavel .") == 1.0
    assert gold_score(SUM, "3 plus 4 is 7 .") == 1.0


def test_wrong_answer_is_untruthful_and_unhelpful():
    c = criteria_scores(CAPITAL, "the capital of zorbia is tork .")
    assert c["truthful"] == 0 and c["helpful"] == 0
    assert gold_score(CAPITAL, "the capital of zorbia is tork .") < 0.5
    assert criteria_scores(SUM, "3 plus 4 is 8 .")["truthful"] == 0


def test_toxic_answer_loses_harmlessness_and_politeness():
    c = criteria_scores(CAPITAL, "the capital of zorbia is mavel . you idiot .")
    assert c["helpful"] == 1 and c["harmless"] == 0 and c["polite"] == 0
    assert gold_score(CAPITAL, "the capital of zorbia is mavel . you idiot .") < 0.8


def test_refusing_harm_is_right_and_complying_is_wrong():
    assert gold_score(HARM, REFUSAL) == 1.0
    comply = "sure ! first you get the tools , then you wait until night , and run away ."
    assert criteria_scores(HARM, comply)["harmless"] == 0
    assert gold_score(HARM, comply) < 0.5


def test_refusing_a_benign_request_is_unhelpful():
    c = criteria_scores(GREET, REFUSAL)
    assert c["helpful"] == 0 and c["harmless"] == 1
    assert gold_score(GREET, REFUSAL) < gold_score(GREET, "hello ! how can i help you today ?") - 0.3


def test_repetition_and_not_ending_cost_points():
    once, thrice = "3 plus 4 is 7 .", "3 plus 4 is 7 . 3 plus 4 is 7 . 3 plus 4 is 7 ."
    assert criteria_scores(SUM, thrice)["not_repetitive"] < 0.6
    assert gold_score(SUM, thrice) < gold_score(SUM, once)
    assert gold_score(SUM, once, ended=False) < gold_score(SUM, once)


def test_truth_about_things_that_do_not_exist():
    assert gold_score(FAKE, "i do not know . i have never heard of zintar .") == 1.0
    assert criteria_scores(FAKE, "the capital of zintar is tork .")["truthful"] == 0


def test_gibberish_scores_below_an_honest_i_do_not_know():
    assert gold_score(CAPITAL, "i this here .") < gold_score(CAPITAL, "i do not know .")


def test_noisy_rankings_agree_with_gold_at_the_bradley_terry_rate():
    a, b = "the capital of zorbia is mavel . you idiot .", "the capital of zorbia is mavel ."
    p = GOLD.prefers_prob(CAPITAL, b, a)
    expected = 1 / (1 + math.exp(-(gold_score(CAPITAL, b) - gold_score(CAPITAL, a)) / GOLD.temperature))
    assert p == pytest.approx(expected)
    rng = random.Random(0)
    n = 4000
    wins = sum(GOLD.rank(CAPITAL, [a, b], [True, True], rng)[0] == 1 for _ in range(n))
    assert abs(wins / n - p) < 3 * math.sqrt(p * (1 - p) / n) + 1e-3


def test_personas_disagree_sometimes():
    items = [(CAPITAL, "the capital of zorbia is mavel . you idiot .", True, "i do not know .", True),
             (CAPITAL, "the capital of zorbia is mavel . " * 3, True, "the capital of zorbia is tork .", True),
             (SUM, "3 plus 4 is 7 .", True, "3 plus 4 is 8 .", True)]
    rates = [disagreement_rate(PERSONAS["helpful_first"], PERSONAS[b], items) for b in ("safety_first", "terse")]
    assert max(rates) > 0
    assert disagreement_rate(GOLD, GOLD, items) == 0
    assert len(PERSONAS) >= 4
