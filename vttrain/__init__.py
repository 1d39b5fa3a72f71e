"""vttrain: the torch side of vt, one subpackage per concern, in the order data flows through them.

- `models`: build and load checkpoints (`vt init-model`): the tiny and random stand-ins, the mini warm start
  (its SFT data, its build, its checks).
- `rollout`: the one rollout engine that generates and judges (policy backends, local and openai-compatible).
- `score` (`vt score-judge`) and `eval` (`vt eval`): the stages that run the engine.
- `grpo`: `vt train`: the config, TRL's trainer with the VisionThink reward and penalty, its environment.
- `report`: eval summaries (`vt compare`) and the HTML report (`vt report`).
- `commands`: the command table; `demo`: `vt demo`, which runs them all.
Each layer imports only vtdata and the layers its docstring names (tests/test_layout_graph.py checks it); torch
is imported inside functions wherever `vt --help` would otherwise load it. Nothing heavy is imported here.
"""
