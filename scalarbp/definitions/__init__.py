"""What every backend computes with, defined once: the activations (:mod:`.activations`),
the output activations and losses with the output delta they seed (:mod:`.losses`), and
where each layer's parameters live in the flat ``theta`` (:mod:`.layout`)."""
