"""ChatML chat templates for the models this project builds itself.

The `{% generation %}` markers let TRL's SFTTrainer compute an assistant-only loss.
"""

_TURNS = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}"
    "{% endgeneration %}{{ '\\n' }}"
    "{%- else %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
)

# The completion starts with the model's own `<think>`.
CHAT_TEMPLATE = _TURNS + "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{%- endif %}"

# R1-distill style: the template opens the thinking phase in the prompt.
CHAT_TEMPLATE_OPEN_THINK = (
    _TURNS + "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n<think>\\n' }}{%- endif %}"
)
