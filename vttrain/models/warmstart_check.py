"""The warm start's held-out checks (`vt init-model mini`): answer accuracy per source, the probability of
calling the tool per source (`call_and_sentence_probability`: it must not depend on the source: WHEN to resize is GRPO's
to learn), and with the zoom tool whether the likeliest zoom box is the quadrant holding the grey box;
`AccuracyCheck` stops SFT once the accuracies (and boxes) pass. Held-out questions come from their own seed
namespaces, never from the SFT rows."""
from __future__ import annotations

import math
import re
from contextlib import contextmanager

import torch
from transformers import TrainerCallback

from vtdata import prompts, protocol

from vtdata.protocol import tools
from vtdata.console import info
from vtdata.resolution import view
from vtdata.sources import sufficiency
from vttrain.models.warmstart_data import SEED_SPACE, THINK_FIRST, MiniConfig, think_sentences, zoom_box

# Where each source is answerable: general and coarse at the low view, fine at the high view only.
CHECK_VIEW = {"general": "low", "coarse": "low", "fine": "high"}


def check_rows(cfg: MiniConfig, space: str = "check", n: int | None = None, views: dict | None = None) -> list[dict]:
    """Held-out questions per source: (source, task, question, answer, image at the source's view of `views`),
    from their own seed namespace `space`, never SFT rows."""
    rows = []
    for source, which in (views or CHECK_VIEW).items():
        task, scale = sufficiency.SOURCES[source]
        side = cfg.size if which == "high" else cfg.size // 2
        for i in range(n or cfg.check_size):
            s = sufficiency.sample(task, f"{SEED_SPACE}-{space}-{cfg.seed}", i, cfg.size, scale, cue=cfg.zoom)
            rows.append({"source": source, "task": task, "question": s["question"], "answer": s["answer"],
                         "image": view(sufficiency.render(s["spec"]), (side, side))})
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
    """Greedy direct answers (the score-judge prompt) -> accuracy per source."""
    msgs = [protocol.direct_messages(prompts.load("score_system"), r["question"], r["image"], newline=True)
            for r in rows]
    tok = processor.tokenizer
    with _inference(model, tok):
        inputs = processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True, return_dict=True,
                                               return_tensors="pt", padding=True)
        out = model.generate(**inputs, max_new_tokens=24, do_sample=False)  # a zoom build's sentence is longer
    texts = tok.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=False)
    acc: dict = {}
    for r, t in zip(rows, texts):
        m = re.search(r"<answer>(.*?)</answer>", t)
        acc.setdefault(r["source"], []).append(bool(m) and m.group(1).strip() == r["answer"])
    return {k: sum(v) / len(v) for k, v in acc.items()}


def call_and_sentence_probability(model, processor, cfg: MiniConfig, n: int = 200) -> tuple[dict, dict]:
    """The warm start's probability of calling the tool per source, on `n` held-out rows each at the low view
    (`row_call_probability`): {source: mean P(call)}, `choice_mass` and `sentence_mass` (their smallest values over
    the rows: both ~1 mean the exact sum covers what the model would sample); and P(sentence | source): per source,
    the mean probability of each turn-1 sentence (its
    text between the think tags) on the same rows. The box sentence is the model's reading of the view, taught in
    SFT from the view's contrast: on the shipped data it coincides with the source (fine low views look flat,
    coarse ones striped), so GRPO learns which action follows a perception, not the perception itself."""
    rows = check_rows(cfg, "calls", n, {s: "low" for s in CHECK_VIEW})
    probs = row_call_probability(model, processor, rows, tuple(cfg.tools), think_sentences(cfg))
    out: dict = {}
    said: dict = {}
    for r, (p, _, _, by_sentence) in zip(rows, probs):
        out.setdefault(r["source"], []).append(p)
        for text, w in by_sentence.items():
            said.setdefault(r["source"], {}).setdefault(text.removeprefix("<think>").removesuffix("</think>"), []).append(w)
    calls = ({k: round(sum(v) / len(v), 4) for k, v in out.items()}
             | {"choice_mass": round(min(c for _, c, _, _ in probs), 4),
                "sentence_mass": round(min(m for _, _, m, _ in probs), 4)})
    return calls, {k: {t: round(sum(w) / len(w), 4) for t, w in v.items()} for k, v in said.items()}


def row_call_probability(model, processor, rows: list[dict], tools: tuple = ("resize",), sentences: dict | None = None,
                         batch: int = 48) -> list[tuple[float, float, float]]:
    """Per row (task, question, image: the view turn 1 shows), the mini model's exact probability of calling
    the tool under the agent prompt of `vt train` / `vt eval --mode think`. Turn 1 is one of its question's think
    sentences (`sentences`, task -> texts, default THINK_FIRST's: for the box question the model picks "striped" or
    "flat"; a zoom build's also name the quadrant, `warmstart_data.think_sentences`), then ONE choice token,
    `<tool_call>` or `<answer>`: P(call) = sum over the sentences s of P(s) * q(s) / sum of P(s), with
    q(s) = p(<tool_call> | s) / (p(<tool_call> | s) + p(<answer> | s)). Returns (P(call), the two choice
    tokens' smallest share of the next-token probability, the sentences' total probability, {sentence: its share of
    that probability}) per row."""
    tok = processor.tokenizer
    call_id, answer_id = tok.convert_tokens_to_ids("<tool_call>"), tok.convert_tokens_to_ids("<answer>")
    sentences = sentences or {"general": [THINK_FIRST["general"]], "ocr": [THINK_FIRST["striped"], THINK_FIRST["flat"]]}
    items = [(k, text) for k, r in enumerate(rows) for text in sentences[r["task"]]]
    cands: dict = {}
    with _inference(model, tok):
        for j in range(0, len(items), batch):
            part = items[j:j + batch]
            texts = [processor.apply_chat_template(protocol.agent_messages(rows[k]["question"], rows[k]["image"],
                                                                           tools=tools),
                                                   tokenize=False, add_generation_prompt=True,
                                                   chat_template=protocol.chat_template()) + text
                     for k, text in part]
            inputs = processor(text=texts, images=[[rows[k]["image"]] for k, _ in part], return_tensors="pt",
                               padding=True)
            logp = torch.log_softmax(model(**inputs).logits.float(), dim=-1)  # left padding: sentences end last
            ids = inputs["input_ids"]
            for b, (k, text) in enumerate(part):
                m = len(tok(text, add_special_tokens=False)["input_ids"])
                lp = float(logp[b, -m - 1:-1].gather(-1, ids[b, -m:].unsqueeze(-1)).sum())
                pc, pa = float(logp[b, -1, call_id].exp()), float(logp[b, -1, answer_id].exp())
                cands.setdefault(k, []).append((math.exp(lp), pc / (pc + pa), pc + pa, text))
    out = []
    for k in range(len(rows)):
        c = cands[k]
        mass = sum(w for w, _, _, _ in c)
        out.append((sum(w * q for w, q, _, _ in c) / mass, min(x for _, _, x, _ in c), mass,
                    {t: w / mass for w, _, _, t in c}))
    return out


def check_boxes(model, processor, cfg: MiniConfig) -> float:
    """With the zoom tool: the share of held-out detail questions (low view) on which the model's own zoom call is
    the quadrant holding the grey box (`zoom_box`): its likeliest turn-1 box sentence (which names a quadrant,
    `think_sentences`), then, after that sentence, the likeliest of the four quadrant zoom calls. (Whether to
    call, and which tool, is not checked: not taught.)"""
    q = cfg.size // 4
    boxes = [[x, y, x + q, y + q] for y in (0, q) for x in (0, q)]
    calls = ["<tool_call>" + tools.call_text("zoom", b)[len("<tool_call>"):] for b in boxes]
    sentences = think_sentences(cfg)["ocr"]
    heads, images, want = [], [], []
    for i in range(cfg.check_size):
        s = sufficiency.sample("ocr", f"{SEED_SPACE}-check-{cfg.seed}", i, cfg.size, "fine", cue=cfg.zoom)
        img = view(sufficiency.render(s["spec"]), (cfg.size // 2, cfg.size // 2))
        msgs = protocol.agent_messages(s["question"], img, tools=tuple(cfg.tools))
        heads.append(processor.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True,
                                                   chat_template=protocol.chat_template()))
        images.append(img)
        want.append(boxes.index(zoom_box(s["spec"], cfg.size)))
    said = _likeliest(model, processor, heads, images, sentences)
    picked = _likeliest(model, processor, [h + sentences[k] for h, k in zip(heads, said)], images, calls)
    return sum(p == w for p, w in zip(picked, want)) / len(want)


def _likeliest(model, processor, heads: list[str], images: list, tails: list[str], batch: int = 64) -> list[int]:
    """Per (head, image): the index of the tail (a continuation text) the model finds the most likely."""
    tok = processor.tokenizer
    items = [(k, t) for k in range(len(heads)) for t in range(len(tails))]
    spans = [len(tok(t, add_special_tokens=False)["input_ids"]) for t in tails]
    scores: dict = {}
    with _inference(model, tok):
        for j in range(0, len(items), batch):
            part = items[j:j + batch]
            inputs = processor(text=[heads[k] + tails[t] for k, t in part], images=[[images[k]] for k, _ in part],
                               return_tensors="pt", padding=True)
            logp = torch.log_softmax(model(**inputs).logits[:, :-1].float(), dim=-1)
            tok_logp = logp.gather(-1, inputs["input_ids"][:, 1:].unsqueeze(-1)).squeeze(-1)
            for b, (k, t) in enumerate(part):
                scores[k, t] = float(tok_logp[b, -spans[t]:].sum())
    return [max(range(len(tails)), key=lambda t: scores[k, t]) for k in range(len(heads))]


def unpassed(checks: list[dict], cfg: MiniConfig) -> dict:
    """The checks of the last measurement below `cfg.check_accuracy` ({} when the build passed them all)."""
    last = checks[-1] if checks else {}
    return {k: v for k, v in last.items() if k != "step" and v < cfg.check_accuracy}


class AccuracyCheck(TrainerCallback):
    """Stops SFT once both classes pass the accuracy check (see MiniConfig.check_every), and with the zoom
    tool once its boxes do too (`check_boxes`)."""

    def __init__(self, processor, cfg: MiniConfig):
        self.processor, self.cfg = processor, cfg
        self.rows = check_rows(cfg)
        self.history: list[dict] = []

    def measure(self, model, step: int) -> dict:
        """Run the checks at `step`, record them in `history` and log them."""
        acc = check_accuracy(model, self.processor, self.rows)  # the training template renders the same text
        if "zoom" in self.cfg.tools:
            acc["zoom_box"] = check_boxes(model, self.processor, self.cfg)
        self.history.append({"step": step, **acc})
        info(f"warm start: step {step}: held-out accuracy "
             + ", ".join(f"{s} ({CHECK_VIEW[s]} view) {acc[s]:.2f}" for s in CHECK_VIEW)
             + (f", zoom box {acc['zoom_box']:.2f}" if "zoom_box" in acc else ""))
        return acc

    def on_step_end(self, args, state, control, model=None, **kw):
        if state.global_step % self.cfg.check_every == 0 and \
                min(self.measure(model, state.global_step).values()) >= self.cfg.check_accuracy:
            control.should_training_stop = True
