"""A scripted stand-in for the policy's sampling, for tests and benchmarks on random-weight models.

A random tiny model never writes a valid `<tool_call>`, so the two-turn path would go untested. The
`ScriptedGRPOTrainer` replaces the token ids sampled for each turn by the text a `script` returns;
everything else (TRL's tool loop, the environment, the high-res image, masks, rewards, the forward
and backward pass) runs for real. `generate=True` still runs the model's own sampling first (so
timings include it) and then substitutes the script's text.

script(turn, index, prompt_text) -> str | None: turn is 1, 2, ... (up to max_turns), index the rollout's position in the
GLOBAL generation batch (the same on 1 or N processes), prompt_text the decoded context; None keeps
what the model sampled. Turn-2 indices assume every scripted call got its tool turn (TRL regenerates only
those); a tool turn TRL drops for length shifts the indices of the later rollouts of that batch.
"""
from __future__ import annotations

import re
from typing import Callable

from vtdata import protocol
from vttrain.grpo.trainer import VtGRPOTrainer

CALL = f"<think>The text is too small.</think>\n{protocol.CALL_EXAMPLE}"


def answer(text: str) -> str:
    return f"<think>I can read it.</think>\n<answer>{text}</answer>"


def expected_answer(prompt_text: str) -> str:
    """The tests' rows ask 'What number is written? (i)' with answer i*7."""
    m = re.findall(r"\((\d+)\)", prompt_text)
    return str(int(m[-1]) * 7) if m else "0"


def mixed_script(turn: int, index: int, prompt_text: str) -> str:
    """Per group of 4: rollout 0 calls then answers right, 1 calls then answers wrong, 2 answers right
    directly, 3 answers wrong directly."""
    k = index % 4
    if turn == 1:
        if k in (0, 1):
            return CALL
        return answer(expected_answer(prompt_text) if k == 2 else "wrong")
    return answer(expected_answer(prompt_text) if k == 0 else "wrong")


class ScriptedGRPOTrainer(VtGRPOTrainer):
    script: Callable[[int, int, str], str | None] = staticmethod(mixed_script)
    generate: bool = False

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        tok = self.processing_class.tokenizer
        if self.generate:
            ids, logprobs = super()._generate_single_turn(prompt_ids, images, multimodal_fields, num_generations,
                                                          has_tool_images)
        else:
            ids, logprobs = [[tok.eos_token_id] for _ in prompt_ids], None
        texts = [tok.decode(p, skip_special_tokens=False) for p in prompt_ids]
        turn = max(1, texts[0].count("<|im_start|>assistant")) if texts else 1
        if turn == 1:
            base = self.accelerator.process_index * len(prompt_ids)
            indices = [base + i for i in range(len(prompt_ids))]
            self._turn1_indices = indices
            self._called = {}
        else:  # TRL regenerates only the rollouts that called a tool, in batch order
            indices = self._called[turn - 1][:len(prompt_ids)]
        self._called[turn] = [g for g, t in zip(indices, texts) if protocol.parse_tool_call(
            self.script(turn, g, t) or "") is not None]
        out = []
        for i, (g, t) in enumerate(zip(indices, texts)):
            s = self.script(turn, g, t)
            out.append(ids[i] if s is None else tok(s, add_special_tokens=False)["input_ids"] + [tok.eos_token_id])
        return out, (None if any(self.script(turn, g, t) is not None for g, t in zip(indices, texts)) else logprobs)
