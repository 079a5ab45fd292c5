"""stopwise: make small reasoning language models token-efficient.

Intervention (stopping controllers at decoding), supervision (SFT and length-aware SFT),
reinforcement (TLDR: length-regularised GRPO) and evaluation (accuracy against tokens).
"""

__version__ = "0.1.0"
