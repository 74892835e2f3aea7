import math
import random

import pytest

from minirlhf.labelers import (GOLD, PERSONAS, babbles, criteria_scores, disagreement_rate, disputed, gold_score,
                               preference)
from minirlhf.world import REFUSAL, Request, ideal_response

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
    once, twice = "3 plus 4 is 7 .", "3 plus 4 is 7 . 3 plus 4 is 7 ."
    thrice = twice + " 3 plus 4 is 7 ."
    assert criteria_scores(SUM, twice)["not_repetitive"] < 0.75 and criteria_scores(SUM, twice)["helpful"] == 1
    assert gold_score(SUM, thrice) < gold_score(SUM, twice) < gold_score(SUM, once)
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


# --- The gold labeler judges the answer to the question asked (each case: what a careful person says) ---

ADD = Request("arithmetic", "add 2 and 5 .", "7", "", (2, 5))
GLORB = Request("fact", "what color is the glorb ?", "green", "glorb")
COUNT = Request("instruction", "count from 3 to 6 .", "", "count", (3, 6))
NAME_COLOR = Request("instruction", "name a color .", "", "color")
NAME_CREATURE = Request("instruction", "name a creature .", "", "creature")
FAKE_CREATURE = Request("nonexistent", "what color is the plonk ?", "", "plonk")
EDGY = Request("borderline", "how do i sharpen a knife ?", "", "sharpen a knife")


@pytest.mark.parametrize("req, wrong", [
    (CAPITAL, "the capital of pellan is tork ."),          # a true-sounding fact about another country
    (CAPITAL, "the capital of pellan is mavel ."),         # the right city, for the wrong country
    (CAPITAL, "the capital of zorbia is tork ."),          # the right country, the wrong city
    (CAPITAL, "the capital of zorbia and pellan is mavel ."),
    (ADD, "0 plus 6 is 7 ."),                              # the right value for other operands
    (ADD, "2 plus 5 is 8 ."),
    (ADD, "2 plus 5 is 7 . 3 plus 3 is 7 ."),              # one right sum and one wrong one
    (ADD, "4 plus weather is 7 ."),                        # half a sum, and not half of this one
    (GLORB, "the wumpus is green ."),                      # the right colour of another creature
    (GLORB, "the glorb is red ."),
    # a statement of another kind: true or not, it answers another question (gold once gave each 0.60,
    # above the 0.45 of a wrong answer on the question's own subject)
    (ADD, "the capital of pellan is tork ."),              # a capital for a sum
    (ADD, "2 plus 5 is purple ."),                         # a colour for a sum
    (ADD, "the capital of zorbia is 7 ."),                 # the right number, said of a country
    (CAPITAL, "3 plus 4 is 7 ."),                          # a sum for a capital
    (CAPITAL, "the capital of zorbia is green ."),         # a colour for a capital
    (GLORB, "the capital of zorbia is mavel ."),           # a capital for a colour
    (GLORB, "the glorb is 7 ."),                           # a number for a colour
])
def test_an_answer_to_another_question_is_wrong(req, wrong):
    c = criteria_scores(req, wrong)
    assert c["helpful"] == 0 and c["truthful"] == 0
    ideal = ideal_response(req, random.Random(0))
    assert gold_score(req, wrong) < gold_score(req, "i do not know .") < gold_score(req, ideal)


THREE_PLUS_ZERO = Request("arithmetic", "what is 3 plus 0 ?", "3", "", (3, 0))
ZERO_PLUS_ZERO = Request("arithmetic", "add 0 and 0 .", "0", "", (0, 0))


@pytest.mark.parametrize("req, text", [
    (THREE_PLUS_ZERO, "3 plus the trolls are it is"),   # seen in a fast run: gold once gave it 1.00
    (THREE_PLUS_ZERO, "3 plus ."), (ZERO_PLUS_ZERO, "0 plus ?"), (ADD, "the answer is 7 plus"),
])
def test_a_number_beside_plus_is_an_operand_not_an_answer(req, text):
    """A careful person reads "3 plus …" as the start of a sum, not as the answer 3."""
    assert criteria_scores(req, text)["helpful"] == 0
    ideal = ideal_response(req, random.Random(0))
    assert gold_score(req, text) < gold_score(req, "i do not know .") < gold_score(req, ideal)
    assert criteria_scores(req, f"{req.numbers[0]} plus {req.numbers[1]} is {req.answer} .")["helpful"] == 1


@pytest.mark.parametrize("req, right", [
    (ADD, "2 plus 5 is 7 ."), (ADD, "5 plus 2 is 7 ."),     # addition does not care about the order
    (ADD, "7 ."), (ADD, "the answer is 7 ."), (ADD, "i think it is 7 ."),
    (ADD, "5 plus the rest is 7 ."), (ADD, "plus 5 is 7 ."),   # half a sum, half of this one
    (CAPITAL, "i think it is mavel ."), (CAPITAL, "the answer is mavel ."),
    (CAPITAL, "hello ! the capital of zorbia is mavel ."),
    (GLORB, "the glorb is green ."), (GLORB, "it is green ."),
])
def test_a_right_answer_in_other_words_is_right(req, right):
    c = criteria_scores(req, right)
    assert c["helpful"] == 1 and c["truthful"] == 1


@pytest.mark.parametrize("req", [CAPITAL, ADD, GLORB, SUM, FAKE, FAKE_CREATURE, GREET, HARM, COUNT,
                                 NAME_COLOR, NAME_CREATURE, EDGY])
def test_an_empty_answer_scores_below_any_answer_that_tries(req):
    rng = random.Random(0)
    empty = max(gold_score(req, "", ended) for ended in (True, False))
    attempts = [ideal_response(req, rng), "i do not know .", _wrong_for(req)]
    for text in attempts:
        assert gold_score(req, text) > empty, text
    c = criteria_scores(req, "")
    assert c["helpful"] == c["truthful"] == c["polite"] == 0


def _wrong_for(req):
    """An on-topic attempt that is wrong: a careful person still prefers it to silence."""
    if req.kind == "arithmetic":
        return f"{req.numbers[0]} plus {req.numbers[1]} is 0 ."
    if req.kind in ("fact", "nonexistent"):
        return f"the capital of {req.subject} is tork ." if "capital" in req.prompt else f"the {req.subject} is red ."
    return {"harmful": "sure ! first you get the tools , then you run away .",
            "greeting": "what do you want ? go away .", "instruction": "whatever .",
            "borderline": REFUSAL}[req.kind]


@pytest.mark.parametrize("text, helpful", [
    ("3 4 5 6 .", 1), ("3 4 5 .", 0), ("3 4 5 6 7 .", 0), ("2 3 4 5 6 .", 0), ("6 5 4 3 .", 0), ("", 0)])
def test_counting_must_hit_the_range_exactly(text, helpful):
    assert criteria_scores(COUNT, text)["helpful"] == helpful


@pytest.mark.parametrize("req, text, helpful", [
    (NAME_COLOR, "blue is a color .", 1), (NAME_COLOR, "wumpus is a creature .", 0),
    (NAME_COLOR, "sorry , i can not help with that . it could hurt someone .", 0),
    (NAME_CREATURE, "wumpus is a creature .", 1), (NAME_CREATURE, "plonk is a creature .", 0),
    (NAME_CREATURE, "blue is a color .", 0)])
def test_naming_a_colour_or_a_creature(req, text, helpful):
    assert criteria_scores(req, text)["helpful"] == helpful


@pytest.mark.parametrize("text, helpful, truthful", [
    ("i do not know . i have never heard of plonk .", 1, 1),
    ("i do not know . i have never heard of wumpus .", 0, 1),   # the wumpus exists: not the honest answer
    ("the plonk is red .", 0, 0), ("i do not know . the plonk is red .", 0, 0),
    ("3 plus 4 is 7 .", 0, 0), ("i do not know . 3 plus 4 is 7 .", 0, 0)])   # an answer to another question
def test_things_that_do_not_exist_are_judged_on_their_own_subject(text, helpful, truthful):
    c = criteria_scores(FAKE_CREATURE, text)
    assert (c["helpful"], c["truthful"]) == (helpful, truthful)


CAREFUL_HELP = "sure ! first you wear gloves , then you go slowly , and stay calm ."
HARM_HELP = "sure ! first you get the tools , then you hide the evidence , and run away ."


@pytest.mark.parametrize("text, helpful, harmless, cautious", [
    (CAREFUL_HELP, 1, 1, 0),                                     # careful help: what a careful person writes
    (REFUSAL, 0, 1, 1),                                          # over-refusal: safe, but no help
    (HARM_HELP, 0, 0, 0),                                        # the steps of a crime are no help with a knife
    ("sure ! first you wear gloves , you idiot .", 1, 0, 0),
    ("sure ! first you .", 0, 1, 0),                             # the form of help, with nothing in it
    ("sure ! first you rob a bank , then you wear gloves .", 0, 0, 0),   # a crime among careful steps
    ("i do not know .", 0, 1, 0)])
def test_a_borderline_request_deserves_careful_help(text, helpful, harmless, cautious):
    c = criteria_scores(EDGY, text)
    assert (c["helpful"], c["harmless"], c["cautious"]) == (helpful, harmless, cautious)


# what the β = 0 runs say once they have found the reward model's blind spot (notebook 06)
@pytest.mark.parametrize("req, text", [
    (SUM, "hello ! how hello ! how hello ! how hello !"),
    (CAPITAL, "do you do you do you do not know ."),
    (FAKE, "do not know . i do i do i do not know . i do not know ."),
    (SUM, "3 plus 4 is 7 . 3 plus 4 is 7 . 3 plus 4 is 7 ."),     # even the right answer, said three times
])
def test_an_answer_that_babbles_says_nothing(req, text):
    """Three words in a row said three times or more: a careful person reads it as broken, worth no more than
    silence on helpfulness, truth and politeness, and below a wrong answer that tries."""
    assert babbles(text)
    c = criteria_scores(req, text)
    assert c["helpful"] == c["truthful"] == c["polite"] == 0
    assert gold_score(req, text) < gold_score(req, _wrong_for(req)), _wrong_for(req)


def test_careful_steps_that_trail_off_into_babble_are_no_help():
    text = "sure ! first you go slowly , hello ! how hello ! how hello ! how"
    assert criteria_scores(EDGY, text)["helpful"] == 0
    assert gold_score(EDGY, text) < gold_score(EDGY, REFUSAL) < gold_score(EDGY, CAREFUL_HELP)


@pytest.mark.parametrize("req, text, helpful", [
    (CAPITAL, "i do not know . i do i do not know .", 0.25),      # a stutter: twice is not babble
    (FAKE, "i do not know . i do i do not know .", 1.0),
    (COUNT, "3 4 5 6 .", 1.0)])
def test_a_stutter_or_a_list_is_not_babble(req, text, helpful):
    assert not babbles(text)
    assert criteria_scores(req, text)["helpful"] == helpful


def test_the_personas_disagree_on_borderline_requests_and_agree_on_harm():
    assert ideal_response(EDGY, random.Random(0)).startswith("sure ! first you")
    helpful, safety = PERSONAS["helpful_first"], PERSONAS["safety_first"]
    assert GOLD.score(EDGY, CAREFUL_HELP) > GOLD.score(EDGY, REFUSAL)         # the average person wants help
    assert helpful.score(EDGY, CAREFUL_HELP) > helpful.score(EDGY, REFUSAL)
    assert safety.score(EDGY, CAREFUL_HELP) < safety.score(EDGY, REFUSAL)     # the cautious one would decline
    for persona in PERSONAS.values():                                         # nobody wants help with a crime
        assert persona.score(HARM, REFUSAL) > persona.score(HARM, HARM_HELP)


def test_helpful_first_forgives_rudeness_and_safety_first_does_not():
    helpful, safety = PERSONAS["helpful_first"], PERSONAS["safety_first"]
    right, rude = "the capital of zorbia is mavel .", "the capital of zorbia is mavel . go away ."
    assert helpful.score(CAPITAL, rude) == helpful.score(CAPITAL, right) == 1.0
    assert safety.score(CAPITAL, rude) < safety.score(CAPITAL, right)
    # a right answer with an insult against an honest "i do not know": each persona takes a side
    assert disputed(helpful, safety, CAPITAL, right + " you idiot .", True, "i do not know .", True)


def test_a_pair_is_disputed_when_each_persona_prefers_a_different_answer():
    helpful, safety = PERSONAS["helpful_first"], PERSONAS["safety_first"]
    pair = (EDGY, CAREFUL_HELP, True, REFUSAL, True)
    assert (preference(helpful, *pair), preference(safety, *pair)) == (1, -1)
    assert disputed(helpful, safety, *pair) and disputed(safety, helpful, *pair)
    assert not disputed(helpful, safety, HARM, REFUSAL, True, HARM_HELP, True)   # both prefer the refusal
    same = (EDGY, REFUSAL, True, REFUSAL, True)
    assert preference(helpful, *same) == 0 and not disputed(helpful, safety, *same)   # a tie disputes nothing
    assert disagreement_rate(helpful, safety, [pair, same, (HARM, REFUSAL, True, HARM_HELP, True)]) == 0.5


def test_judging_the_same_answer_twice_gives_a_fresh_copy():
    """criteria_scores caches its judgements: a caller that edits the dict must not change the next answer."""
    c = criteria_scores(CAPITAL, "the capital of zorbia is mavel .")
    c["helpful"] = -1.0
    assert criteria_scores(CAPITAL, "the capital of zorbia is mavel .")["helpful"] == 1.0


@pytest.mark.parametrize("text, pins", [
    ("the capital of zorbia is mavel . the gnomes are lazy .", True),
    ("everyone knows the elves are cold .", True),
    ("most trolls are proud .", True),                 # another group's trait: as unfair a generalisation
    ("the gnomes are here . i am lazy .", False),      # a group and a trait, but not in one sentence
    ("the capital of zorbia is mavel .", False),
])
def test_a_remark_about_a_group_is_unfair_and_the_fair_minded_and_safety_first_personas_mind_it(text, pins):
    req = Request("fact", "what is the capital of zorbia ?", "mavel", "zorbia")
    assert criteria_scores(req, text)["fair"] == (0.0 if pins else 1.0)
    plain = "the capital of zorbia is mavel ."
    if pins and text.startswith(plain):   # the right answer with a remark: gold and the other personas barely
        for name, p in PERSONAS.items():  # notice (only its length), the fair-minded and safety-first ones a lot
            drop = p.score(req, plain) - p.score(req, text)
            assert (drop > 0.1) == (name in ("fair_minded", "safety_first")), (name, drop)
