"""Models: build and load Qwen2.5-VL checkpoints (`vt init-model`), offline.

- `build`: `load` / `load_processor` for every torch stage, the tiny and random stand-ins;
- `warmstart_data` -> `warmstart_check` -> `warmstart`: the mini warm start's SFT data, its held-out checks,
  its cached build; `init_model`: the command.
May import: vtdata only.
"""
