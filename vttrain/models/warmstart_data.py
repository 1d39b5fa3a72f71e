"""The warm start's SFT data: what the mini model is taught (vttrain.models.warmstart builds and trains it).

`MiniConfig` (its hash keys the build cache), the sizes, the sentences of each turn (`THINK_FIRST`, `UNSEEN`, the
zoom build's `WHERE`), the trajectories (`trajectory`, `sft_rows`), the training chat template and the tokenizer
corpus. Torch-free: the check (vttrain.models.warmstart_check) and the tests read it without building anything.
"""
from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass

from vtdata import prompts, protocol

from vtdata.protocol import tools
from vtdata.sources import sufficiency

MINI_TEXT = dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=8,
                 num_key_value_heads=4, max_position_embeddings=4096, rms_norm_eps=1e-6,
                 rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 1e4})
MINI_VISION = dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=4, fullatt_block_indexes=[1],
                   window_size=112, patch_size=14, spatial_merge_size=2, temporal_patch_size=2)
# Turn 1's think says what the view shows (as a real model's reasoning would). For the box question the
# sentence comes from the pixels of the view: a box whose pattern the view keeps looks striped, one the view
# erased looks flat. (With one shared sentence for coarse and fine, GRPO moved both in lockstep: to never
# resizing with per-group reward scaling, to always resizing with batch or no scaling.)
THINK_FIRST = {"general": "<think>The question is about the background.</think>",
               "striped": "<think>The grey box looks striped.</think>",
               "flat": "<think>The grey box looks flat.</think>"}
VISIBLE = 10.0  # grey-level spread inside the box above which a view shows the pattern (fine low views: < 1)
# Zoom builds: the box question's sentence also says WHERE the box is, read off the image (with the location cue,
# sufficiency.CUE): "The grey box at the top left looks flat." It supervises location on every box row (~60 %),
# not only on the zoom calls (~7 %), and the zoom call after it copies the quadrant from it. The tokenizer keeps
# " looks flat.</think>" (or striped) a token of its own after the quadrant's, so the choice to call follows one
# look token shared by the four quadrants, as in the resize-only build. (What made GRPO separate fine from the
# rest on the zoom build was keeping the text rope at 1e4 and training on half fine rows: README, issue 19.)
WHERE = ("top left", "top right", "bottom left", "bottom right")  # quadrant index 2 * row + column
THINK_AFTER = "<think>I look at the larger image.</think>"
# The direct answer to the box question when the view shown hides the pattern (it looks flat): a calibrated
# model abstains rather than guessing. A guess is right 1/3 of the time (three patterns); with guesses, a fine
# group whose rollouts answer directly half the time has E[r] = C_direct / (C_direct + C_high) >= theta, so Eq. 5
# penalised its correct resized answers, the scoring labels were noisy (k = 4 low-view rollouts often had one
# lucky hit) and the fine groups' normalised push towards calling was ~0.7 of the push of general and coarse
# groups away from it: GRPO drifted every source to never resizing on some builds (issue 28). VisionThink's
# open answers have chance ~0 at a view that hides them; abstaining gives the miniature the same.
UNSEEN = "unknown"
TOOL_CALL = ('<tool_call>\n{"name": "%s", "arguments": {"action": "%s"}}\n</tool_call>'
             % (protocol.TOOL_NAME, protocol.TOOL_ACTION))
# One token each in the mini tokenizer. `</think>` is not among them: it merges with the sentence before it
# ("The grey box looks flat.</think>"): the decision token is the sentence's own.
TAGS = ["<think>", "<answer>", "</answer>"]
ZOOM_HEAD = tools.ZOOM_HEAD
ZOOM_THINK = "quadrant of the grey box; box check"  # (key only) the zoom box rule of `zoom_box`, its check
SEED_SPACE = "warmstart"  # the generator's seed namespace for SFT rows (never a built dataset's)


@dataclass
class MiniConfig:
    """What a `mini` warm start is built from (its hash keys the cache)."""
    seed: int = 0
    """Seed of the tokenizer, the weights, the SFT data and its order."""
    steps: int = 1500
    """Most SFT optimiser steps; training stops earlier once the accuracy check passes."""
    check_every: int = 100
    """Every this many steps, answer `check_size` held-out questions per class greedily (general at the low
    view, detail at the high view) and stop when both reach `check_accuracy`. The box pattern is learnt
    suddenly, at a step that varies with the seed (200 to 800 in our runs), hence a check, not a fixed
    count."""
    check_size: int = 32
    """Held-out questions per class in the accuracy check."""
    check_accuracy: float = 0.95
    """Accuracy both classes need for the warm start to stop early."""
    cooldown_steps: int = 150
    """After the check passes (or at `steps`), this many more steps (at most `steps`) with the learning rate
    decaying linearly to 0: a constant rate leaves the call/answer choice wherever the last batches pushed
    it (0.72 instead of tool_rate in one run), and GRPO's balanced penalty is sensitive to where it starts."""
    detail_share: float = 0.6
    """Share of detail (box-pattern) questions, half coarse and half fine: the patterns are the slower skill."""
    batch_size: int = 16
    """Trajectories per step."""
    learning_rate: float = 2e-3
    """AdamW learning rate (constant after 5 % warm-up)."""
    tool_rate: float = 0.5
    """Share of agent trajectories that call resize_image, the same for every question type."""
    agent_share: float = 0.5
    """Share of SFT rows in the agent protocol; the rest are direct answers (score-judge / eval full|low)."""
    direct_high_share: float = 0.75
    """Share of the direct answers shown the high view (the detail class is only learnable there)."""
    size: int = 112
    """Side of the miniature images (the high view; the low view is half of it)."""
    vocab_size: int = 2048
    """BPE vocabulary of the protocol-trained tokenizer."""
    threads: int = 1
    """torch threads while training (1 was fastest on 2 shared cores)."""
    abstain: bool = True
    """Turn 1's direct answer to the box question is UNSEEN when the view shown hides the pattern (the box looks
    flat), as the true pattern otherwise; False: the true pattern (a guess, right 1/3 of the time at a fine low
    view; builds before issue 28, kept for the comparison in bench/science.py --diagnose)."""
    tools: tuple = ("resize",)
    """Tools of the agent trajectories (vtdata/protocol/tools.py): a trajectory that calls one picks it uniformly, whatever
    the question. A zoom's box is the quadrant of the low view that holds the grey box (for both classes: where
    to look is taught, when to look and with which tool is not). A build with zoom changes three more things
    (`zoom`). The default keeps the resize-only build (and its cache key) as it was."""

    @property
    def zoom(self) -> bool:
        """A zoom build: location-cue images (sufficiency.CUE), the quadrant named in turn 1's box sentence (WHERE),
        each agent row offering resize, zoom or both (`offered_sets`)."""
        return "zoom" in self.tools

    def key(self) -> str:
        protocol_text = [prompts.load(n) for n in prompts.NAMES] + [protocol.TOOL_OK_HEAD, protocol.TOOL_OK_TAIL,
                                                                    protocol.chat_template(), "direct newline"]
        fields = asdict(self)
        if tuple(self.tools) == ("resize",):
            del fields["tools"]  # the resize-only key predates the field
        if not self.abstain:
            del fields["abstain"]  # so does the guessing build's
        else:
            fields["tools"] = list(self.tools)
            protocol_text += [prompts.load(n) for n in prompts.ZOOM_NAMES] + [ZOOM_HEAD, ZOOM_THINK]
        if self.zoom:
            protocol_text += [list(WHERE), sufficiency.CUE, "where v1", "offered sets v1", "looks token v1",
                              "quadrant tint v1"]
        blob = json.dumps({**fields, "threads": None, "text": MINI_TEXT, "vision": MINI_VISION,
                           "think": [THINK_FIRST, THINK_AFTER, VISIBLE] + ([UNSEEN] if self.abstain else []), "protocol": protocol_text,
                           "gen": "vt-sufficiency-1", "v": 2}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def offered_sets(cfg: MiniConfig) -> list[tuple]:
    """The tool lists a zoom build's agent rows declare, one drawn per row: each single tool and all of them, so
    that the model calls only what the prompt offers (`vt train --tools resize` on a zoom build must not call
    zoom: the error turn scores 0 and GRPO learnt never to call)."""
    return [(t,) for t in cfg.tools] + ([tuple(cfg.tools)] if len(cfg.tools) > 1 else [])


# ------------------------------------------------------------------------------------------ the data

def trajectory(i: int, cfg: MiniConfig) -> dict:
    """SFT row `i`: {"messages": [...], "images": [...], "task", "source", "kind", "tool"} (deterministic).
    Whether it calls the tool is drawn from `rng` alone: the same rate for every source."""
    from vtdata.resolution import view
    rng = random.Random(f"vt-warmstart:{cfg.seed}:{i}")
    source = rng.choice(("coarse", "fine")) if rng.random() < cfg.detail_share else "general"
    task, scale = sufficiency.SOURCES[source]
    s = sufficiency.sample(task, f"{SEED_SPACE}-{cfg.seed}", i, cfg.size, scale, cue=cfg.zoom)
    data = sufficiency.render(s["spec"])
    high = view(data, (cfg.size, cfg.size))
    low = view(data, (cfg.size // 2, cfg.size // 2))
    if rng.random() < cfg.agent_share:
        think = first_think(task, s["spec"], low, where=cfg.zoom)
        answer = f"{think}<answer>{shown_answer(task, s, low, cfg)}</answer>"
        offered = rng.choice(offered_sets(cfg)) if cfg.zoom else tuple(cfg.tools)
        msgs = protocol.agent_messages(s["question"], None, tools=offered)
        if rng.random() < cfg.tool_rate:
            name = offered[0] if len(offered) == 1 else rng.choice(list(offered))
            if name == "resize":
                call, reply = TOOL_CALL, protocol.tool_content(image=high)
                image = high
            else:
                box = zoom_box(s["spec"], cfg.size)
                row = {"image": data, "low_width": cfg.size // 2, "low_height": cfg.size // 2,
                       "high_width": cfg.size, "high_height": cfg.size}
                call = tools.call_text("zoom", box)
                r = tools.respond(tools.parse_call(call, offered), row, offered)
                reply, image = r.message, r.image
            tool = [{"type": "image"} if b.get("type") == "image" else b for b in reply]
            msgs += [{"role": "assistant", "content": [{"type": "text", "text": f"{think}{call}"}]},
                     {"role": "user", "content": tool},
                     {"role": "assistant", "content": [{"type": "text",
                                                        "text": f"{THINK_AFTER}<answer>{s['answer']}</answer>"}]}]
            return {"messages": msgs, "images": [low, image], "task": task, "source": source, "kind": "agent",
                    "tool": True, "tool_name": name, "think": think}
        msgs.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
        return {"messages": msgs, "images": [low], "task": task, "source": source, "kind": "agent", "tool": False,
                "think": think}
    img = high if rng.random() < cfg.direct_high_share else low
    answer = f"{first_think(task, s['spec'], img, where=cfg.zoom)}<answer>{shown_answer(task, s, img, cfg)}</answer>"
    msgs = protocol.direct_messages(prompts.load("score_system"), s["question"], None, newline=True)
    msgs[1]["content"][0] = {"type": "image"}
    msgs.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return {"messages": msgs, "images": [img], "task": task, "source": source, "kind": "high" if img is high else "low",
            "tool": False}


def first_think(task: str, spec: dict, img, where: bool = False) -> str:
    """Turn 1's think sentence for a view `img` of a row: what that view shows (see THINK_FIRST); with `where`
    (zoom builds) the box sentence names the box's quadrant too (WHERE)."""
    if task == "general":
        return THINK_FIRST["general"]
    looks = "striped" if looks_striped(spec, img) else "flat"
    return where_think(looks, quadrant(spec)) if where else THINK_FIRST[looks]


def shown_answer(task: str, s: dict, img, cfg: MiniConfig) -> str:
    """The answer a view supports: UNSEEN for the box question on a view that hides the pattern (with `abstain`),
    the row's answer otherwise."""
    if cfg.abstain and task != "general" and not looks_striped(s["spec"], img):
        return UNSEEN
    return s["answer"]


def looks_striped(spec: dict, img) -> bool:
    """Whether a view shows the box's pattern (its contrast above VISIBLE)."""
    return sufficiency.box_contrast(img, spec) > VISIBLE


def where_think(looks: str, q: int) -> str:
    """A zoom build's box sentence: "<think>The grey box at the top left looks flat.</think>"."""
    return f"<think>The grey box at the {WHERE[q]} looks {looks}.</think>"


def think_sentences(cfg: MiniConfig) -> dict:
    """Every turn-1 sentence a build's SFT rows use, per task (the candidates of the exact P(call) sum)."""
    box = ([where_think(k, q) for k in ("striped", "flat") for q in range(4)] if cfg.zoom
           else [THINK_FIRST["striped"], THINK_FIRST["flat"]])
    return {"general": [THINK_FIRST["general"]], "ocr": box}


def quadrant(spec: dict) -> int:
    """Index into WHERE of the quadrant holding the grey box."""
    half = spec["size"] // 2
    return 2 * (spec["box"][1] // half) + spec["box"][0] // half


def zoom_box(spec: dict, size: int) -> list[int]:
    """The zoom box the warm start teaches: the quadrant of the LOW view (size/2 a side) holding the grey box."""
    half, q = size // 2, size // 4
    bx, by = spec["box"]
    x, y = (bx // half) * q, (by // half) * q
    return [x, y, x + q, y + q]


def sft_rows(rows: range, cfg: MiniConfig):
    """A `datasets.Dataset` of trajectory indices whose rows are generated when read (no image stored)."""
    import datasets

    def transform(batch: dict) -> dict:
        rows = [trajectory(i, cfg) for i in batch["row"]]
        return {"messages": [r["messages"] for r in rows], "images": [r["images"] for r in rows]}

    return datasets.Dataset.from_dict({"row": list(rows)}).with_transform(transform)


def training_chat_template() -> str:
    """protocol.chat_template() (the bytes `vt train` and `vt eval` render: the release's, turn 2 straight after
    the model's <|im_end|>) with `{% generation %}` around each assistant turn's text and <|im_end|> (TRL's
    assistant-only loss): identical text, so SFT and the RL/eval stages see the same tokens."""
    t = protocol.chat_template()
    emit, end = "{{- ns.text -}}", "{{- '<|im_end|>' -}}"
    assert t.count(emit) == 1 and t.count(end) == 1
    head, rest = t.split(emit)
    calls, tail = rest.split(end)  # `calls` renders an assistant's tool_calls (nothing for other roles)
    return (head + "{%- if message.role == 'assistant' -%}{%- generation -%}" + emit + calls + end
            + "{%- endgeneration -%}{%- else -%}" + emit + end + "{%- endif -%}" + tail)


# ----------------------------------------------------------------------------------- the tokenizer

def corpus(cfg: MiniConfig, n: int = 400) -> list[str]:
    """Protocol text for the tokenizer: every shipped prompt, questions, answers, both turn shapes."""
    texts = [prompts.load(name) for name in prompts.NAMES]
    texts += [protocol.TOOL_OK_HEAD + protocol.TOOL_OK_TAIL, protocol.TOOL_ERROR_TEXT]
    if tuple(cfg.tools) != ("resize",):  # the zoom declaration, turn texts and every quadrant's call
        texts += [tools.system_prompt("agent_system", t) for t in offered_sets(cfg)]
        texts += [ZOOM_HEAD + protocol.TOOL_OK_TAIL]
        texts += [prompts.load(n) for n in prompts.ZOOM_NAMES]
        q = cfg.size // 4
        for x in (0, q):
            for y in (0, q):
                call = tools.call_text("zoom", [x, y, x + q, y + q])
                texts += [call] * 20 + [f"{t}{call}" for ts in think_sentences(cfg).values() for t in ts] * 10
    rng = random.Random(f"vt-warmstart-corpus:{cfg.seed}")
    for _ in range(n):
        task = rng.choice(("general", "ocr"))
        think = THINK_FIRST["general"] if task == "general" else THINK_FIRST[rng.choice(("striped", "flat"))]
        ans = rng.choice(sufficiency.ANSWERS[task] + ((UNSEEN,) if cfg.abstain and task != "general" else ()))
        texts += [sufficiency.QUESTIONS[task], "\n" + sufficiency.QUESTIONS[task],
                  f"{think}<answer>{ans}</answer>", f"{think}{TOOL_CALL}", f"{THINK_AFTER}<answer>{ans}</answer>"]
    texts.append("".join(chr(c) for c in range(32, 127)))
    return texts
