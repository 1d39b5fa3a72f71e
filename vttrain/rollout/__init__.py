"""Rollouts: the one engine that generates answers and judges them, for every stage that does both.

- `policy` (with its transport `http`): the policy backends, local transformers or an OpenAI-compatible server;
- `engine`: k samples per view of each row, judged by the shared judge, stored in DuckDB, resumable
  (`vt score-judge`: vttrain.score; `vt eval`: vttrain.eval).
May import: vtdata and vttrain.models.
"""
