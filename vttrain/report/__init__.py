"""Reports: what a finished run says.

- `summary`: eval run summaries (`vt compare`; read by `vt eval`, `vt report`, `vt demo`);
- `tables`, `examples`, `plots` -> `report`: the sections, example rollouts and PNG plots of `vt report`'s page.
May import: vtdata only (it reads the database and the files the other stages wrote, never their code).
"""
