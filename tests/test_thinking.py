import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from stopwise.prompts import PromptConfig, build_prompt
from stopwise.thinking import (
    DelimiterError,
    ThinkingFormat,
    detect_thinking_format,
    find_subsequence,
)


def word_tokenizer(words):
    vocab = {w: i for i, w in enumerate(["[UNK]", *words])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")


def test_delimiter_the_tokenizer_cannot_encode_is_an_error():
    tok = word_tokenizer(["hello", "world"])
    with pytest.raises(DelimiterError, match="cannot encode"):
        detect_thinking_format(tok, "</think>")


def test_detects_single_token_delimiter_and_splits(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    fmt = detect_thinking_format(tok)
    assert fmt.eot == "</think>" and len(fmt.eot_ids) == 1
    ids = tok.encode("a b</think>c", add_special_tokens=False)
    thinking, answer, emitted = fmt.split(ids)
    assert emitted and tok.decode(thinking) == "a b" and tok.decode(answer) == "c"
    assert fmt.split(ids[:2]) == (ids[:2], [], False)


def test_multi_token_delimiter_s1_style(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    fmt = detect_thinking_format(tok, "<|im_start|>answer")
    assert len(fmt.eot_ids) > 1 and fmt.think_start == "<|im_start|>think"
    ids = [5, 6, *fmt.eot_ids, 7]
    assert fmt.split(ids) == ([5, 6], [7], True)
    assert find_subsequence([1, 2, 3], (2, 3)) == 1 and find_subsequence([1, 2], (3,)) == -1


def test_prompt_opens_thinking_once(tiny_model_dir, tiny_open_think_dir):
    for model_dir in (tiny_model_dir, tiny_open_think_dir):
        tok = AutoTokenizer.from_pretrained(model_dir)
        fmt = ThinkingFormat("</think>", (0,), "<think>")
        prompt = build_prompt(tok, "1+1?", fmt, PromptConfig(level="short"))
        assert prompt.endswith("<|im_start|>assistant\n<think>\n")
        assert prompt.count("<think>") == 1
        assert "Think briefly" in prompt and "\\boxed{}" in prompt


def test_unknown_level_is_an_error():
    with pytest.raises(ValueError, match="known levels: short, medium, long"):
        PromptConfig(level="tiny")


def test_eos_ids_merge_the_generation_config_and_the_tokenizer(tmp_path):
    """One EOS rule for every engine and the reward: the model's generation config first (a
    loaded model or its directory), then the tokenizer's EOS, each id once."""
    from types import SimpleNamespace

    from transformers import GenerationConfig

    from stopwise.thinking import eos_ids

    tok = SimpleNamespace(eos_token_id=7)
    assert eos_ids(tok) == (7,)
    assert eos_ids(SimpleNamespace(eos_token_id=None)) == ()
    model = SimpleNamespace(generation_config=SimpleNamespace(eos_token_id=[3, 7]))
    assert eos_ids(tok, model) == (3, 7)
    GenerationConfig(eos_token_id=[2, 5]).save_pretrained(tmp_path / "with")
    assert eos_ids(tok, tmp_path / "with") == (2, 5, 7)
    (tmp_path / "without").mkdir()
    assert eos_ids(tok, str(tmp_path / "without")) == (7,)
