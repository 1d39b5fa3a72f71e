"""vttrain.grpo.fastgen (one prefill per distinct prompt, later turns on the last turn's cache) samples the same tokens as
transformers' generate on the whole rows, for the same seed, on the tiny Qwen2.5-VL."""
import pytest
import torch

import train_helpers as h


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from transformers import Qwen2_5_VLForConditionalGeneration

    from vttrain.models import build as models
    d = h.tiny_model(tmp_path_factory.mktemp("fastgen"))
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(str(d), dtype=torch.float32).eval()
    return model, models.load_processor(str(d))


def _config(model, tok, max_new=6):
    from transformers import GenerationConfig

    from vttrain.grpo.env import vision_token_ids
    # half the vocabulary ends a turn, so rows end at different steps (the random model never writes <|im_end|>)
    return GenerationConfig(do_sample=True, temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=max_new,
                            eos_token_id=list(range(0, 150000, 2)), pad_token_id=tok.pad_token_id,
                            suppress_tokens=vision_token_ids(tok), disable_compile=True)


def _reference(model, rows, fields, gc, pad, image_pad, seed):
    """transformers' generate on the left-padded whole rows (TRL's regular path): completions cut after EOS, and
    each step's logits."""
    import copy

    from vttrain.grpo.fastgen import _left_pad
    ids, mask = _left_pad(rows, pad, "cpu")
    gc = copy.deepcopy(gc)
    gc.return_dict_in_generate, gc.output_logits = True, True
    torch.manual_seed(seed)
    out = model.generate(input_ids=ids, attention_mask=mask, mm_token_type_ids=(ids == image_pad).long(),
                         generation_config=gc, **fields)
    eos = set(gc.eos_token_id)
    seqs = out.sequences[:, ids.size(1):].tolist()
    return [r[:next((i for i, t in enumerate(r) if t in eos), len(r) - 1) + 1] for r in seqs], out.logits


def _close(got_logits, want_logits, completions, tol=1e-5):
    """Each step's logits of the rows still sampling at that step agree within `tol` (float summation order)."""
    assert len(got_logits) == len(want_logits)
    for step, (a, b) in enumerate(zip(got_logits, want_logits)):
        live = torch.tensor([len(c) > step for c in completions])
        assert live.any()
        assert (a[live] - b[live]).abs().max() <= tol, (step, (a[live] - b[live]).abs().max())


def _images(proc, imgs):
    out = proc.image_processor(images=imgs, return_tensors="pt")
    return {"pixel_values": out["pixel_values"], "image_grid_thw": out["image_grid_thw"]}


def _user(tok, grid, text):
    n = int(grid.prod()) // 4
    return tok("<|vision_start|>", add_special_tokens=False)["input_ids"] + [tok.convert_tokens_to_ids("<|image_pad|>")] * n \
        + tok(f"<|vision_end|>{text}<|im_end|>\n<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]


def test_shared_prefill_and_cache_reuse_sample_the_same_tokens(tiny):
    from vttrain.grpo import fastgen
    model, proc = tiny
    tok = proc.tokenizer
    pad, image_pad, start = tok.pad_token_id, model.config.image_token_id, model.config.vision_start_token_id
    gc = _config(model, tok)
    low = [h.make_image(i).resize((56, 56)) for i in range(2)]
    f1 = _images(proc, low)
    head = tok("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n", add_special_tokens=False)["input_ids"]
    prompts = [head + _user(tok, f1["image_grid_thw"][0], "What is it?"),
               head + _user(tok, f1["image_grid_thw"][1], "What number is written here?")]
    G = 3  # two groups of three rollouts: each prompt prefilled once, its cache copied to its rows
    rows = [p for p in prompts for _ in range(G)]
    fields = _images(proc, [img for img in low for _ in range(G)])
    with torch.no_grad():
        sampling = fastgen.sampler(model, gc, len(rows), torch.device("cpu"))
        assert sampling is not None
        prefills = []
        forward = model.forward

        def counted(*a, **k):
            prefills.append(k["input_ids"].shape)
            return forward(*a, **k)
        model.forward = counted
        torch.manual_seed(1)
        logits = []
        got, held = fastgen.generate(model, rows, fields, sampling, None, image_pad, start, logits)
        del model.forward
        want, want_logits = _reference(model, rows, fields, gc, pad, image_pad, seed=1)
        assert got == want
        _close(logits, want_logits, got)
        assert prefills[0][0] == 2  # one prefill row per distinct prompt
        assert len({len(c) for c in got}) > 1  # rows ended at different steps (masked cache columns)

        # turn 2 for four of the six rows: prompt + turn 1 + a tool suffix with the high view
        pick = [0, 2, 3, 5]
        high = [h.make_image(i).resize((112, 112)) for i in range(2)]
        f_high = _images(proc, high)
        rows2, imgs2 = [], []
        for i in pick:
            g = i // G
            tail = tok("\n<|im_start|>user\n", add_special_tokens=False)["input_ids"] + \
                _user(tok, f_high["image_grid_thw"][g], "Here it is.")
            rows2.append(rows[i] + got[i] + tail)
            imgs2 += [low[g], high[g]]
        fields2 = _images(proc, imgs2)
        torch.manual_seed(2)
        logits2 = []
        got2, _ = fastgen.generate(model, rows2, fields2, sampling, held, image_pad, start, logits2)
        want2, want_logits2 = _reference(model, rows2, fields2, gc, pad, image_pad, seed=2)
        assert got2 == want2
        _close(logits2, want_logits2, got2)


def test_a_row_that_does_not_continue_the_held_cache_is_refused(tiny):
    from vttrain.grpo import fastgen
    model, proc = tiny
    tok = proc.tokenizer
    gc = _config(model, tok)
    img = [h.make_image(0).resize((56, 56))]
    f = _images(proc, img)
    row = tok("<|im_start|>user\n", add_special_tokens=False)["input_ids"] + _user(tok, f["image_grid_thw"][0], "Hi")
    with torch.no_grad():
        sampling = fastgen.sampler(model, gc, 1, torch.device("cpu"))
        _, held = fastgen.generate(model, [row], f, sampling, None, model.config.image_token_id,
                                   model.config.vision_start_token_id)
        other = [row[:-1] + [row[-1] + 1]]  # not the held row's tokens
        assert fastgen.generate(model, other, f, sampling, held, model.config.image_token_id,
                                model.config.vision_start_token_id) is None
