"""vttrain: the torch side of vt (models, policy backends, scoring, training, evaluation).

Import submodules directly (`from vttrain import models`); nothing heavy is imported here.
"""
