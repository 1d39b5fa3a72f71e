"""Hub-ready artefacts: a built or curated set has a dataset card and loads as separate splits with
`datasets.load_dataset(DIR)`."""
import datasets
import yaml

from build_helpers import build, write_manifest


def _front(readme):
    text = readme.read_text()
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1]), text


def test_built_set_card_and_split_aware_loading(tmp_path):
    m = write_manifest(tmp_path, [{"name": "g", "kind": "synthetic", "task": "general", "take": 6},
                                  {"name": "o", "kind": "synthetic", "task": "ocr", "take": 6}],
                       val_fraction=0.34, license="cc-by-4.0", seed=7)
    res = build(m, tmp_path / "set")
    by_split = res["counts"]["by_split"]
    ds = datasets.load_dataset(str(tmp_path / "set"))
    assert set(ds) == {"train", "validation"}
    assert len(ds["train"]) == by_split["train"] and len(ds["validation"]) == by_split["val"] > 0
    assert set(ds["validation"]["split"]) == {"val"}
    front, text = _front(tmp_path / "set" / "README.md")
    assert front["license"] == "cc-by-4.0"
    for needle in ("seed 7", "manifest.yaml", "| g |", "| o |", f"| validation | {by_split['val']} |", "`image` | `image`"):
        assert needle in text, needle


def test_manifest_license_must_be_a_string(tmp_path):
    import pytest

    from vtdata.console import VtError
    m = write_manifest(tmp_path, [{"name": "g", "kind": "synthetic", "task": "general", "take": 2}], license=3)
    with pytest.raises(VtError, match="license must be a string"):
        build(m, tmp_path / "set")


def test_trained_model_processor_card_and_config(tmp_path):
    import json

    import train_helpers as h
    from vttrain.grpo import scripted
    from vttrain.grpo.config import CONFIG_FILE
    from vttrain.grpo.train import run
    from vttrain.grpo.config import parse_config

    model, data = h.tiny_model(tmp_path), h.write_dataset(tmp_path / "data")
    final = run(h.config(model, data, tmp_path / "run", max_steps=1, penalty_mode="released"),
                trainer_class=scripted.ScriptedGRPOTrainer)
    for name in ("processor_config.json", "tokenizer_config.json"):
        if (final / name).exists():
            assert json.loads((final / name).read_text())["processor_class"] == "Qwen2_5_VLProcessor"
    card, _ = _front(final / "README.md")
    text = (final / "README.md").read_text()
    assert card["pipeline_tag"] == "image-text-to-text" and "[None]" not in text
    assert str(model) in text and "`released`" in text and "vt version" in text
    cfg = yaml.safe_load((final / CONFIG_FILE).read_text())
    assert cfg["penalty_mode"] == "released" and cfg["max_steps"] == 1 and cfg["model"] == str(model)
    assert (tmp_path / "run" / CONFIG_FILE).is_file()
    again = parse_config(final / CONFIG_FILE, [])  # the dump is a valid train config
    assert again.penalty_mode == "released" and again.num_generations == 4
    _loads_with_vt_and_stock_transformers(final)


def _loads_with_vt_and_stock_transformers(final):
    """vt's loader everywhere; stock AutoProcessor and pipeline("image-text-to-text") where torchvision imports
    (the stock Qwen2.5-VL processor has a torchvision video processor)."""
    import json

    import pytest
    from PIL import Image

    from vttrain.models.build import load, load_processor
    # the saved processor names its video processor (the stock processor fails without one)
    video = json.loads((final / "processor_config.json").read_text())["video_processor"]
    assert video["video_processor_type"] == "Qwen2VLVideoProcessor" and video["patch_size"] == 14
    proc = load_processor(final)
    image = Image.new("RGB", (56, 56), "red")
    batch = proc(text=["<|vision_start|><|image_pad|><|vision_end|>red?"], images=[image], return_tensors="pt")
    assert batch["image_grid_thw"].tolist() == [[1, 4, 4]]
    model, _ = load(final)
    assert model.config.model_type == "qwen2_5_vl"
    try:
        import torchvision  # noqa: F401
    except Exception as err:  # not installed, or a build that does not match this torch
        pytest.skip(f"stock AutoProcessor needs torchvision: {type(err).__name__}: {str(err).splitlines()[0]}")
    from transformers import AutoProcessor, pipeline
    stock = AutoProcessor.from_pretrained(final)
    assert type(stock).__name__ == "Qwen2_5_VLProcessor" and stock.video_processor is not None
    pipe = pipeline("image-text-to-text", model=str(final))
    out = pipe(text=[{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "red?"}]}],
               max_new_tokens=2)
    assert out and "generated_text" in out[0]


def test_failed_train_leaves_no_output_dir(tmp_path):
    import pytest

    import train_helpers as h
    from vttrain.grpo.train import run
    model = h.tiny_model(tmp_path)
    empty = tmp_path / "nodata"
    empty.mkdir()
    with pytest.raises(Exception):
        run(h.config(model, empty, tmp_path / "run"))
    assert not (tmp_path / "run").exists()
