"""Can a mini warm start tell WHERE the grey box is? Linear probes on the frozen model (issue 19).

On held-out low views (56 x 56: four visual tokens, the grey box exactly one of them) of the image-decision
family (vtdata/sources/sufficiency.py, seed namespace `probe`, never SFT rows):
(a) vision: each visual token's output of the vision tower (after the merger) -> its grid index (4 classes),
    over all tokens and over the grey-box token alone (does the box's own token know where it sits?);
(b) text: the text model's residual (every layer) at the position that predicts the zoom call's first bbox
    token (agent prompt, "The grey box looks flat.", `<tool_call>`, the call up to where the four quadrant
    calls differ) -> the quadrant holding the box. A zoom build (`vt init-model mini --tools resize,zoom`) names the
    quadrant in turn 1's sentence, so there the position is the one predicting that sentence (after `<think>`),
    and its images carry the location cue (sufficiency `location_cue`) as in its training.
A multinomial logistic regression per probe, trained on 3/4 of the images, accuracy on the other 1/4
(chance 0.25). `--rows` images per source (general, coarse, fine).

    python bench/location_probe.py MODEL [--rows 200]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from vtdata import protocol

from vtdata.protocol import tools
from vtdata.resolution import view
from vtdata.sources import sufficiency
from vttrain.models import build as models
from vttrain.models.warmstart_data import THINK_FIRST, quadrant


def images(n: int, size: int = 112, cue: bool = False) -> tuple[list, list[int], list[str]]:
    """n held-out low views per source, the grid index of the box's token (row-major) and the question."""
    imgs, where, questions = [], [], []
    for source, (task, scale) in sufficiency.SOURCES.items():
        for i in range(n):
            s = sufficiency.sample(task, "probe", i, size, scale, cue=cue)
            imgs.append(view(sufficiency.render(s["spec"]), (size // 2, size // 2)))
            where.append(quadrant(s["spec"]))
            questions.append(sufficiency.QUESTIONS["ocr"])  # (b) asks the box question on every image
    return imgs, where, questions


def linear_probe(x: torch.Tensor, y: torch.Tensor, groups: torch.Tensor, steps: int = 300) -> float:
    """Held-out accuracy of a multinomial logistic regression; rows of one image (`groups`) stay on one side."""
    test = groups % 4 == 3
    mu, sd = x[~test].mean(0), x[~test].std(0) + 1e-6
    x = (x - mu) / sd
    lin = torch.nn.Linear(x.shape[1], int(y.max()) + 1)
    opt = torch.optim.LBFGS(lin.parameters(), max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(lin(x[~test]), y[~test]) + 1e-3 * lin.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float((lin(x[test]).argmax(-1) == y[test]).float().mean())


def vision_features(model, processor, imgs: list) -> torch.Tensor:
    """(images, 4, hidden): the vision tower's merged output per visual token, in grid (row-major) order."""
    inputs = processor.image_processor(images=imgs, return_tensors="pt")
    with torch.no_grad():
        out = model.model.visual(inputs["pixel_values"], grid_thw=inputs["image_grid_thw"])
    out = getattr(out, "pooler_output", out)  # the merger's output (transformers 5: pooler_output)
    return out.reshape(len(imgs), -1, out.shape[-1])


def text_features(model, processor, imgs: list, questions: list[str], tool_set=("resize", "zoom"),
                  batch: int = 32, where: bool = False) -> torch.Tensor:
    """(images, layers + 1, hidden): the residual at the position predicting the first bbox token (`where`: the
    position predicting turn 1's sentence, which names the quadrant)."""
    tok = processor.tokenizer
    q = 28
    calls = [tools.call_text("zoom", [x, y, x + q, y + q])[len("<tool_call>"):] for y in (0, q) for x in (0, q)]
    ids = [tok(c, add_special_tokens=False)["input_ids"] for c in calls]
    common = next(k for k in range(min(map(len, ids))) if len({tuple(i[:k + 1]) for i in ids}) > 1)
    prefix = tok.decode(ids[0][:common])
    feats = []
    with torch.no_grad():
        for j in range(0, len(imgs), batch):
            texts = [processor.apply_chat_template(protocol.agent_messages(qu, im, tools=tool_set), tokenize=False,
                                                   add_generation_prompt=True, chat_template=protocol.chat_template())
                     + ("<think>" if where else THINK_FIRST["flat"] + "<tool_call>" + prefix)
                     for qu, im in zip(questions[j:j + batch], imgs[j:j + batch])]
            inputs = processor(text=texts, images=[[im] for im in imgs[j:j + batch]], return_tensors="pt",
                               padding=True)  # left padding: the position is the last one
            hs = model(**inputs, output_hidden_states=True).hidden_states
            feats.append(torch.stack([h[:, -1] for h in hs], 1))
    return torch.cat(feats)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--rows", type=int, default=200, help="held-out images per source")
    a = ap.parse_args()
    t0, c0 = time.time(), time.process_time()
    torch.manual_seed(0)
    model, processor = models.load(a.model, device="cpu")
    processor.tokenizer.padding_side = "left"
    zoom_build = "zoom" in json.loads((Path(a.model) / models.INIT_FILE).read_text()).get("config", {}).get("tools", [])
    imgs, where, questions = images(a.rows, cue=zoom_build)
    where = torch.tensor(where)
    n = len(imgs)
    v = vision_features(model, processor, imgs)  # (n, 4, h)
    k = v.shape[1]
    grid = torch.arange(k).repeat(n)
    groups = torch.arange(n).repeat_interleave(k)
    acc_all = linear_probe(v.reshape(n * k, -1), grid, groups)
    acc_box = linear_probe(v[torch.arange(n), where], where, torch.arange(n))
    print(f"(a) vision token -> grid index: all tokens {acc_all:.3f}, grey-box token {acc_box:.3f} (chance 0.25)")
    t = text_features(model, processor, imgs, questions, where=zoom_build)
    per_layer = [linear_probe(t[:, layer], where, torch.arange(n)) for layer in range(t.shape[1])]
    print(f"(b) text residual at {'turn 1 sentence' if zoom_build else 'the first bbox token'} -> quadrant: "
          + ", ".join(f"layer {i} {a_:.3f}" for i, a_ in enumerate(per_layer)) + " (layer 0 = embeddings)")
    rope = model.config.text_config.rope_parameters
    print(f"model {a.model}: {'zoom build, location cue' if zoom_build else 'no location cue'}, "
          f"rope_theta {rope['rope_theta']}, mrope_section {rope['mrope_section']}, "
          f"vision depth {model.config.vision_config.depth}; {n} images; "
          f"wall {time.time() - t0:.0f} s, cpu {time.process_time() - c0:.0f} s")


if __name__ == "__main__":
    main()
