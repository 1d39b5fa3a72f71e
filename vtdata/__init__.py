"""vtdata: everything in vt that needs no torch — data build, judges, curation, SQL.

Data flows build -> score -> curate -> train -> eval; the torch-side stages live in `vttrain`. vtdata imports
nothing from vttrain or vt (tests/test_layout_graph.py); the agent protocol is vtdata.protocol.
Imports: pyarrow, duckdb and PIL at the top of a module (`vt --help` loads them anyway); the slow,
rarely needed ones (`datasets`, `openai`, `math_verify`, rich tables) inside the function that uses
them, so commands that do not need them do not pay for them.
"""

__version__ = "0.1.0"
