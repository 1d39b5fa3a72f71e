"""Answer extraction: which part of a model's raw output is judged.

The prediction is the text of the LAST `<answer>...</answer>` block of the output. When that block
contains `\\boxed{...}` (the agent prompt asks for it on math and multiple-choice questions), the
content of the last `\\boxed{}` is the prediction (nested braces are balanced). An output without a
closed answer tag has no prediction: `extract_answer` returns None and every judge scores the sample
0 with status 'ok' and reason 'format: no <answer> tag', without any judge call (a format failure
is a wrong answer the model is responsible for, not a judge failure).
"""
from __future__ import annotations

import re

_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")


def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` in text (balanced braces), or None."""
    starts = [m.end() for m in _BOXED.finditer(text)]
    for start in reversed(starts):
        depth, i = 1, start
        while i < len(text):
            c = text[i]
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    return text[start:i].strip()
            i += 1
    return None


def extract_answer(text: str | None) -> str | None:
    """The judged prediction of a raw model output: last `<answer>` block, its `\\boxed{}` if any.

    Returns None when the output has no closed `<answer>...</answer>` block (format failure).
    """
    if not text:
        return None
    blocks = _ANSWER.findall(text)
    if not blocks:
        return None
    answer = blocks[-1].strip()
    boxed = last_boxed(answer)
    return boxed if boxed is not None else answer


def answer_of(text: str) -> str:
    """For inputs that are already final answers (e.g. lmms-eval filtered responses): the boxed
    content when present, else the stripped text."""
    boxed = last_boxed(text)
    return boxed if boxed is not None else text.strip()


def release_answer(text: str) -> str:
    """The release's extraction (`extract_answer_tags: split`): what follows the last `<answer>`, up to the
    next `</answer>`, stripped; the whole text when there is no tag. No `\\boxed{}` unwrapping, never None."""
    return text.split("<answer>")[-1].split("</answer>")[0].strip()
