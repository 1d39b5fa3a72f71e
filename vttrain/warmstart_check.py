"""The warm start's held-out checks (`vt init-model mini`): answer accuracy per class, and with the zoom tool
whether the likeliest zoom box is the quadrant holding the grey box; `AccuracyCheck` stops SFT once they
pass. Held-out questions come from their own seed namespace, never from the SFT rows."""
from __future__ import annotations

import re
from contextlib import contextmanager

import torch
from transformers import TrainerCallback

from vtdata import prompts, protocol, tools
from vtdata.console import info
from vtdata.resolution import view
from vtdata.sources import miniature
from vttrain.warmstart import SEED_SPACE, THINK_FIRST, MiniConfig, zoom_box


def check_rows(cfg: MiniConfig) -> list[dict]:
    """The accuracy check's held-out questions: (task, view, question, answer, image), never SFT rows."""
    rows = []
    for task, side in (("general", cfg.size // 2), ("ocr", cfg.size)):
        for i in range(cfg.check_size):
            s = miniature.sample(task, f"{SEED_SPACE}-check-{cfg.seed}", i, cfg.size)
            rows.append({"task": task, "question": s["question"], "answer": s["answer"],
                         "image": view(miniature.render(s["spec"]), (side, side))})
    return rows


@contextmanager
def _inference(model, tokenizer):
    """Left padding, eval mode and no gradients for the block; the model's mode and the tokenizer's padding
    side are restored after it (the check runs in the middle of training)."""
    side, was_training = tokenizer.padding_side, model.training
    tokenizer.padding_side = "left"
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)
        tokenizer.padding_side = side


def check_accuracy(model, processor, rows: list[dict]) -> dict:
    """Greedy direct answers (the score-judge prompt) -> accuracy per task."""
    msgs = [protocol.direct_messages(prompts.load("score_system"), r["question"], r["image"]) for r in rows]
    tok = processor.tokenizer
    with _inference(model, tok):
        inputs = processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True, return_dict=True,
                                               return_tensors="pt", padding=True)
        out = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    texts = tok.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=False)
    acc: dict = {}
    for r, t in zip(rows, texts):
        m = re.search(r"<answer>(.*?)</answer>", t)
        acc.setdefault(r["task"], []).append(bool(m) and m.group(1).strip() == r["answer"])
    return {k: sum(v) / len(v) for k, v in acc.items()}


def check_boxes(model, processor, cfg: MiniConfig) -> float:
    """With the zoom tool: the share of held-out detail questions (low view) on which, among the four
    quadrant zoom calls, the model finds the most likely the one holding the grey box (`zoom_box`). (Whether
    to call, and which tool, is not checked: not taught.)"""
    tok = processor.tokenizer
    q = cfg.size // 4
    boxes = [[x, y, x + q, y + q] for y in (0, q) for x in (0, q)]
    calls = [tools.call_text("zoom", b)[len("<tool_call>"):] for b in boxes]
    texts, images, want, spans = [], [], [], []
    for i in range(cfg.check_size):
        s = miniature.sample("ocr", f"{SEED_SPACE}-check-{cfg.seed}", i, cfg.size)
        img = view(miniature.render(s["spec"]), (cfg.size // 2, cfg.size // 2))
        msgs = protocol.agent_messages(s["question"], img, tools=tuple(cfg.tools))
        head = processor.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True,
                                             chat_template=protocol.CHAT_TEMPLATE) + THINK_FIRST["ocr"] + "<tool_call>"
        for call in calls:
            texts.append(head + call)
            images.append([img])
            spans.append(len(tok(call, add_special_tokens=False)["input_ids"]))
        want.append(boxes.index(zoom_box(s["spec"], cfg.size)))
    with _inference(model, tok):
        inputs = processor(text=texts, images=images, return_tensors="pt", padding=True)
        logp = torch.log_softmax(model(**inputs).logits[:, :-1].float(), dim=-1)
    ids = inputs["input_ids"][:, 1:]
    tok_logp = logp.gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    scores = [float(tok_logp[k, -n:].sum()) for k, n in enumerate(spans)]
    ok = sum(max(range(4), key=lambda b: scores[4 * i + b]) == w for i, w in enumerate(want))
    return ok / len(want)


class AccuracyCheck(TrainerCallback):
    """Stops SFT once both classes pass the accuracy check (see MiniConfig.check_every), and with the zoom
    tool once its boxes do too (`check_boxes`)."""

    def __init__(self, processor, cfg: MiniConfig):
        self.processor, self.cfg = processor, cfg
        self.rows = check_rows(cfg)
        self.history: list[dict] = []

    def on_step_end(self, args, state, control, model=None, **kw):
        if state.global_step % self.cfg.check_every:
            return
        acc = check_accuracy(model, self.processor, self.rows)  # the training template renders the same text
        if "zoom" in self.cfg.tools:
            acc["zoom_box"] = check_boxes(model, self.processor, self.cfg)
        self.history.append({"step": state.global_step, **acc})
        info(f"warm start: step {state.global_step}: held-out accuracy general (low view) "
             f"{acc['general']:.2f}, detail (high view) {acc['ocr']:.2f}"
             + (f", zoom box {acc['zoom_box']:.2f}" if "zoom_box" in acc else ""))
        if min(acc.values()) >= self.cfg.check_accuracy:
            control.should_training_stop = True
