"""Models: build and load Qwen2.5-VL checkpoints (`vt init-model`), offline.

- `build`: `load` / `load_processor` for every torch stage, the tiny and random stand-ins;
- `fastpath`: same-maths speed-ups of the model's forward and of image processing (the vision tower once per
  distinct image, the patch embedding as one matmul, the LM head on the scored positions only), used by the warm
  start's SFT and by vttrain.grpo's trainer;
- `warmstart_data` -> `warmstart_check` -> `warmstart_card` -> `warmstart`: the mini warm start's SFT data, its
  held-out checks, its model card, its cached build; `init_model`: the command.
May import: vtdata only.
"""
