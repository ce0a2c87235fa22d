"""Diagnostics beside the library: the finite-difference gradient check (:mod:`.gradcheck`),
every backend compared on one batch (:mod:`.compare`), seed 002's worked example and any
net's forward and backward pass printed term by term (:mod:`.explain`), and the notes'
symbols and errata (:mod:`.notation`)."""
