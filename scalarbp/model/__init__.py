"""The model: the network and its parameters (:mod:`.mlp`), and its files
(:mod:`.persistence`).  ``scalarbp.model.MLP`` is the network, as before this was a folder."""
from .mlp import MAX_COUNT, MLP, SPARSE_BLOCK_ROWS, ParameterList  # noqa: F401  (the public names)
