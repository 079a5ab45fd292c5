"""Reward callables: formulas on hand-made completions, truncation, parsing, validation, metrics."""

import pytest

from stopwise.rewards import (
    CorrectnessReward,
    LengthPenalizedReward,
    MissingColumnError,
    check_reward_columns,
    completion_text,
    is_truncated,
)

EOS = 99
CAP = 100


def boxed_grader(texts, golds, eot):
    """Correct when the answer phase holds \\boxed{gold} (a stand-in for math-verify)."""
    out = []
    for text, gold in zip(texts, golds):
        answer = text.split(eot, 1)[1] if eot and eot in text else ""
        out.append(f"\\boxed{{{gold}}}" in answer)
    return out


def ids(n, eos=True):
    """n completion ids, the last one EOS when the completion finished."""
    return [1] * (n - 1) + [EOS if eos else 1]


RIGHT = "so 2+2=4 </think> The answer is \\boxed{4}."
WRONG = "so 2+2=5 </think> The answer is \\boxed{5}."


def test_truncation_rule():
    assert is_truncated(ids(CAP, eos=False), CAP, [EOS])
    assert not is_truncated(ids(CAP, eos=True), CAP, [EOS])  # EOS exactly on the last token
    assert not is_truncated(ids(10, eos=False), CAP, [EOS])  # stopped early (a stop string)
    assert not is_truncated(ids(10), CAP, [EOS])
    assert is_truncated(ids(CAP, eos=True), CAP, None)  # no EOS ids known: the cap decides
    assert is_truncated(ids(10, eos=False), None, [EOS])  # no cap known: TRL's rule
    assert not is_truncated(ids(10), None, [EOS])


def test_completion_text_forms():
    assert completion_text("abc") == "abc"
    assert completion_text([{"role": "assistant", "content": "abc"}]) == "abc"
    assert completion_text({"role": "assistant", "content": "abc"}) == "abc"
    assert completion_text([{"role": "assistant", "content": [{"type": "text", "text": "a"}, "b"]}]) == "ab"
    assert completion_text(None) is None
    assert completion_text(42) is None
    assert completion_text([{"role": "assistant", "content": 42}]) is None
    assert completion_text([]) is None


def test_correctness_reward():
    reward = CorrectnessReward(eot="</think>", max_completion_length=CAP, eos_token_ids=[EOS],
                               grader=boxed_grader)
    assert reward.__name__ == "correctness"
    completions = [
        RIGHT,                                            # correct, finished
        WRONG,                                            # wrong
        RIGHT,                                            # correct text but truncated at the cap
        [{"role": "assistant", "content": RIGHT}],        # chat format, correct
        None,                                             # unreadable
        [{"role": "assistant", "content": 7}],            # unreadable content
        "no delimiter and no box at all",                 # no answer to parse
    ]
    cids = [ids(20), ids(20), ids(CAP, eos=False), ids(20), ids(5), ids(5), ids(30)]
    out = reward(prompts=["p"] * 7, completions=completions, completion_ids=cids, answer=["4"] * 7)
    assert out == [1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]


def test_correctness_survives_a_crashing_grader():
    def broken(texts, golds, eot):
        raise RuntimeError("boom")

    reward = CorrectnessReward(max_completion_length=CAP, grader=broken)
    assert reward(completions=[RIGHT, WRONG], completion_ids=[ids(5), ids(5)], answer=["4", "4"]) == [0.0, 0.0]


def test_no_delimiter_no_answer_phase():
    """The real grader would accept the box of a delimiter-less text; the reward must not."""
    pytest.importorskip("stopwise.grading")
    no_eot = "so 2+2=4.\n.\n\nThe answer is \\boxed{4}."
    strict = CorrectnessReward(eot="</think>", max_completion_length=CAP, eos_token_ids=[EOS])
    lenient = CorrectnessReward(eot="</think>", max_completion_length=CAP, eos_token_ids=[EOS],
                                require_eot=False)
    assert strict(completions=[no_eot, RIGHT], completion_ids=[ids(9), ids(9)], answer=["4", "4"]) == [0.0, 1.0]
    assert lenient(completions=[no_eot], completion_ids=[ids(9)], answer=["4"]) == [1.0]
    length = LengthPenalizedReward(CAP, eos_token_ids=[EOS])
    out = length(completions=[no_eot, RIGHT], completion_ids=[ids(10), ids(10)], answer=["4", "4"],
                 level=["short", "short"])
    assert out == pytest.approx([-0.06, 0.94])


def test_correctness_with_the_real_grader():
    pytest.importorskip("stopwise.grading")
    reward = CorrectnessReward(eot="</think>", max_completion_length=CAP, eos_token_ids=[EOS])
    completions = [RIGHT, WRONG, "think </think> \\boxed{\\frac{", "x </think> \\boxed{\\frac12}"]
    cids = [ids(10), ids(10), ids(10), ids(10)]
    golds = ["4", "4", "1/2", "\\frac{1}{2}"]
    assert reward(completions=completions, completion_ids=cids, answer=golds) == [1.0, 0.0, 0.0, 1.0]


def test_a_completion_cut_at_the_cap_counts_only_with_a_box():
    """As in evaluation: cut at the cap (no EOS), only a \\boxed{} of the answer phase counts."""
    pytest.importorskip("stopwise.grading")
    cut = [
        RIGHT,                                               # the box came before the cut
        "so 2+2=4 </think> The answer is 4 and then",        # no box: 0
        "so x = 4",                                          # no delimiter (a stop failure): 0
        "so \\boxed{4} and then more thinking",                 # a box, but no delimiter: 0
    ]
    for require_eot in (True, False):
        reward = CorrectnessReward(eot="</think>", max_completion_length=CAP, eos_token_ids=[EOS],
                                   require_eot=require_eot)
        out = reward(completions=cut, completion_ids=[ids(CAP, eos=False)] * 4, answer=["4"] * 4)
        assert out == [1.0, 0.0, 0.0, 0.0]
    # the same texts, finished (EOS): math-verify's own extraction reads "4" in the second one
    reward = CorrectnessReward(eot="</think>", max_completion_length=CAP, eos_token_ids=[EOS])
    assert reward(completions=cut[:2], completion_ids=[ids(20)] * 2, answer=["4"] * 2) == [1.0, 1.0]


def test_linear_formula():
    reward = LengthPenalizedReward(CAP, eos_token_ids=[EOS], grader=boxed_grader)
    assert reward.__name__ == "length_penalized"
    completions = [RIGHT, WRONG, RIGHT, RIGHT, [{"role": "assistant", "content": RIGHT}]]
    cids = [ids(50), ids(20), ids(CAP, eos=False), ids(CAP, eos=False), ids(10)]
    levels = ["short", "medium", "long", "short", "medium"]
    out = reward(completions=completions, completion_ids=cids, answer=["4"] * 5, level=levels)
    expected = [
        1 - 0.6 * 50 / CAP,   # correct, short
        0 - 0.3 * 20 / CAP,   # wrong, medium
        0 - 0.1,              # truncated: c = 0, L = L_max
        0 - 0.6,
        1 - 0.3 * 10 / CAP,   # chat format
    ]
    assert out == pytest.approx(expected)


def test_budget_formula():
    reward = LengthPenalizedReward(CAP, form="budget", budgets={"short": 10, "medium": 40, "long": 80},
                                   eos_token_ids=[EOS], grader=boxed_grader)
    cids = [ids(30), ids(5), ids(60), ids(CAP, eos=False), ids(90)]
    completions = [RIGHT, RIGHT, WRONG, RIGHT, RIGHT]
    levels = ["short", "short", "medium", "long", "long"]
    out = reward(completions=completions, completion_ids=cids, answer=["4"] * 5, level=levels)
    expected = [
        1 - 0.6 * (30 - 10) / 10,
        1.0,                          # under budget: no penalty
        0 - 0.3 * (60 - 40) / 40,
        0 - 0.1 * (CAP - 80) / 80,    # truncated
        1 - 0.1 * (90 - 80) / 80,
    ]
    assert out == pytest.approx(expected)


def test_custom_weights_and_levels():
    reward = LengthPenalizedReward(CAP, weights={"terse": 1.0, "free": 0.0}, levels=["terse", "free"],
                                   eos_token_ids=[EOS], grader=boxed_grader)
    out = reward(completions=[RIGHT, RIGHT], completion_ids=[ids(50), ids(50)], answer=["4", "4"],
                 level=["terse", "free"])
    assert out == pytest.approx([0.5, 1.0])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"weights": {"shrot": 0.6, "medium": 0.3, "long": 0.1}}, "unknown level 'shrot'"),
        ({"weights": {"short": -0.1, "medium": 0.3, "long": 0.1}}, ">= 0"),
        ({"weights": {"short": "a lot", "medium": 0.3, "long": 0.1}}, "must be a number"),
        ({"weights": {"short": 0.6}, "levels": ["short", "long"]}, "no weight for level(s) long"),
        ({"form": "budget"}, "needs a token budget"),
        ({"form": "budget", "budgets": {"short": 0, "medium": 5, "long": 9}}, "> 0"),
        ({"form": "budget", "budgets": {"short": 5, "medium": 5}}, "no budget for level(s) long"),
        ({"form": "budget", "budgets": {"short": 5, "medium": 5, "long": 5, "huge": 9}}, "'huge'"),
        ({"budgets": {"short": 5, "medium": 5, "long": 5}}, "form='budget' only"),
        ({"form": "quadratic"}, "unknown reward form"),
    ],
)
def test_length_reward_validation(kwargs, message):
    with pytest.raises(ValueError) as err:
        LengthPenalizedReward(CAP, **kwargs)
    assert message in str(err.value)


def test_bad_cap_and_no_truncation_info():
    for cap in (0, -5, 2.5, True):
        with pytest.raises(ValueError, match="max_completion_length"):
            LengthPenalizedReward(cap)
    with pytest.raises(ValueError, match="truncated"):
        CorrectnessReward("</think>")


def test_unknown_level_and_missing_columns_at_call():
    reward = LengthPenalizedReward(CAP, grader=boxed_grader)
    with pytest.raises(ValueError, match="unknown level.*'tiny'"):
        reward(completions=[RIGHT], completion_ids=[ids(5)], answer=["4"], level=["tiny"])
    with pytest.raises(MissingColumnError, match="'level' column"):
        reward(completions=[RIGHT], completion_ids=[ids(5)], answer=["4"])
    with pytest.raises(MissingColumnError, match="'answer' column"):
        reward(completions=[RIGHT], completion_ids=[ids(5)], level=["short"])


def test_check_reward_columns_names_the_column():
    rewards = [CorrectnessReward(max_completion_length=CAP), LengthPenalizedReward(CAP)]
    check_reward_columns(rewards, ["prompt", "answer", "level"])
    with pytest.raises(MissingColumnError) as err:
        check_reward_columns(rewards, ["prompt", "answer"])
    assert "'level'" in str(err.value) and "length_penalized" in str(err.value)
    with pytest.raises(MissingColumnError, match="'answer'"):
        check_reward_columns(rewards, ["prompt", "level"])


def test_per_level_metrics_through_log_metric():
    logged = {}

    def log_metric(name, value):
        logged.setdefault(name, []).append(value)

    reward = LengthPenalizedReward(CAP, eos_token_ids=[EOS], grader=boxed_grader)
    reward(completions=[RIGHT, WRONG, RIGHT], completion_ids=[ids(40), ids(20), ids(CAP, eos=False)],
           answer=["4"] * 3, level=["short", "short", "long"], log_metric=log_metric)
    assert logged["accuracy/short"] == [1.0, 0.0]
    assert logged["tokens/short"] == [40.0, 20.0]
    assert logged["truncated/long"] == [1.0]
    assert logged["accuracy/all"] == [1.0, 0.0, 0.0]
    assert logged["reward/long"] == pytest.approx([-0.1])
    assert "accuracy/medium" not in logged

    quiet = LengthPenalizedReward(CAP, grader=boxed_grader, log_metrics=False)
    logged.clear()
    quiet(completions=[RIGHT], completion_ids=[ids(4)], answer=["4"], level=["short"], log_metric=log_metric)
    assert logged == {}


def test_special_token_delimiter_is_graded_from_ids(tiny_model_dir):
    """s1's `<|im_start|>answer` holds a special token that TRL's decoding drops."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    eot = "<|im_start|>answer"
    text = f"so it is 4{eot}\n\\boxed{{4}}"
    cids = [tok.encode(text, add_special_tokens=False) + [tok.eos_token_id]]
    trl_text = tok.decode(cids[0], skip_special_tokens=True)
    assert eot not in trl_text
    plain = CorrectnessReward(eot, max_completion_length=CAP, eos_token_ids=[tok.eos_token_id], grader=boxed_grader)
    from_ids = CorrectnessReward(eot, max_completion_length=CAP, eos_token_ids=[tok.eos_token_id],
                                 grader=boxed_grader, tokenizer=tok)
    assert plain(completions=[trl_text], completion_ids=cids, answer=["4"]) == [0.0]
    assert from_ids(completions=[trl_text], completion_ids=cids, answer=["4"]) == [1.0]


def test_factories_doc_examples_hold():
    """The formulas in the factories' docstrings are checked examples (TRL's reward style)."""
    import doctest

    import stopwise.rewards.correctness as correctness
    import stopwise.rewards.length as length

    for module in (length, correctness):
        result = doctest.testmod(module)
        assert result.attempted >= 2 and result.failed == 0, module.__name__


def test_rewards_pickle_and_give_the_same_rewards():
    """GRPO's reward workers and multi-process launches pickle the reward functions."""
    import pickle

    from stopwise.rewards import get_correctness_reward, get_length_penalized_reward

    kw = dict(eot="</think>", eos_token_ids=[EOS], grader=boxed_grader)
    columns = dict(completions=[RIGHT, WRONG, RIGHT], completion_ids=[ids(20), ids(40), ids(CAP, eos=False)],
                   answer=["4"] * 3, level=["short", "medium", "long"])
    for reward in (get_correctness_reward(max_completion_length=CAP, **kw),
                   get_length_penalized_reward(CAP, **kw),
                   get_length_penalized_reward(CAP, budgets={"short": 10, "medium": 20, "long": 50},
                                               form="budget", **kw)):
        copy = pickle.loads(pickle.dumps(reward))
        assert copy.__name__ == reward.__name__
        assert copy(**columns) == reward(**columns)
    assert get_length_penalized_reward(CAP, **kw)(**columns) == [1 - 0.6 * 0.2, -0.3 * 0.4, -0.1]
