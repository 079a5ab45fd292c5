"""Prompts: the chat template, the instruction, the optional length level, the open thinking phase."""

from __future__ import annotations

from dataclasses import dataclass

from stopwise.recipes import option
from stopwise.thinking import ThinkingFormat

DEFAULT_INSTRUCTION = "Reason step by step, and put your final answer within \\boxed{}."

LEVELS = ("short", "medium", "long")

# One fixed sentence per level, placed in the user turn (TLDR trains with it, eval can add it).
DEFAULT_LEVEL_INSTRUCTIONS = {
    "short": "Think briefly: use as few tokens as you can.",
    "medium": "Think at a moderate length.",
    "long": "Think carefully and at length.",
}


class ChatTemplateError(ValueError):
    """The tokenizer has no chat template to build prompts with."""


@dataclass
class PromptConfig:
    system_prompt: str | None = option(None, "System message; none when unset.")
    instruction: str = option(DEFAULT_INSTRUCTION, "Sentence appended to every problem.")
    level: str | None = option(None, "Length level stated in the prompt.", choices=list(LEVELS))
    level_instructions: dict[str, str] = option(DEFAULT_LEVEL_INSTRUCTIONS, "Text of each level's instruction.")
    open_thinking: bool = option(True, "Start the completion inside the thinking phase (append the "
                                       "think tag unless the template already opens it).")

    def __post_init__(self):
        check_level(self.level, self.level_instructions)


def check_level(level: str | None, level_instructions: dict[str, str] | None = None) -> None:
    known = level_instructions or DEFAULT_LEVEL_INSTRUCTIONS
    if level is not None and level not in known:
        raise ValueError(f"unknown level {level!r}; known levels: {', '.join(known)}")


def user_message(problem: str, config: PromptConfig, level: str | None = None) -> str:
    level = level if level is not None else config.level
    check_level(level, config.level_instructions)
    parts = [problem.strip()]
    if config.instruction:
        parts.append(config.instruction)
    if level is not None:
        parts.append(config.level_instructions[level])
    return "\n\n".join(parts)


def messages_for(problem: str, config: PromptConfig, level: str | None = None) -> list[dict]:
    messages = []
    if config.system_prompt:
        messages.append({"role": "system", "content": config.system_prompt})
    messages.append({"role": "user", "content": user_message(problem, config, level)})
    return messages


def require_chat_template(tokenizer, name: str = "the model") -> None:
    if not getattr(tokenizer, "chat_template", None):
        raise ChatTemplateError(
            f"the tokenizer of {name} has no chat template; use an instruct/chat model or set "
            "tokenizer.chat_template"
        )


def build_prompt(
    tokenizer, problem: str, fmt: ThinkingFormat, config: PromptConfig, level: str | None = None
) -> str:
    """The text the model continues: chat template with generation prompt, thinking opened."""
    require_chat_template(tokenizer)
    text = tokenizer.apply_chat_template(
        messages_for(problem, config, level), tokenize=False, add_generation_prompt=True
    )
    if config.open_thinking and not text.rstrip().endswith(fmt.think_start):
        text += fmt.think_start + "\n"
    return text
