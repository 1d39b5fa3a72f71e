"""vtdata: everything in vt that needs no torch — data build, judges, curation, SQL.

Data flows build -> score -> curate -> train -> eval; the torch-side stages live in `vttrain`.
"""

__version__ = "0.1.0"
