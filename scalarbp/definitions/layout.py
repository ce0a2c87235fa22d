"""Where each layer's parameters live inside one flat parameter vector ``theta``.

Conventions, fixed once for the whole package (seed 001):

* ``sizes = (d_0, d_1, ..., d_T)`` lists the layer widths, input first.
* ``W[k]`` has shape ``(d_{k+1}, d_k)``: ``W[k][i, j] = w_ij^k`` joins unit ``j`` of layer
  ``k`` to unit ``i`` of layer ``k+1`` (the layout of ``torch.nn.Linear.weight``).
* ``b[k]`` has shape ``(d_{k+1},)``.

``theta`` stores ``W[0], b[0], W[1], b[1], ...`` back to back in C order, so that the
optimisers, the gradient checker and model files handle one vector, while the kernels
and the user see per-layer views of it.  Per-sample work buffers (pre-activations,
activations) hold layers ``1..T`` back to back the same way: a batch of ``N`` samples
puts layer ``k+1``'s ``(N, d_{k+1})`` block at ``N * table[k, UNIT_AT]``.
"""
from collections import namedtuple

import numpy as np

#: Columns of :attr:`Layout.table`, one row per weight layer ``k``: its input and output
#: widths, the offsets of ``W[k]`` and ``b[k]`` in theta, and the number of units in the
#: layers ``1..k`` before it (where its block starts in a per-sample buffer, per sample).
D_IN, D_OUT, W_AT, B_AT, UNIT_AT = range(5)

#: A row of :attr:`Layout.table` by name (:meth:`Layout.layers`).
Layer = namedtuple("Layer", "d_in d_out w_at b_at unit_at")

#: Bytes of per-example gradients held at once: chunks of samples are sized to stay under it.
PER_EXAMPLE_BYTES = 64 << 20


class Layout:
    """Offsets of every ``W[k]`` and ``b[k]`` in a flat vector, for layer widths ``sizes``.

    ``table`` holds them as an int64 array ``(T, 5)`` (columns :data:`D_IN` ...
    :data:`UNIT_AT`): computed once, read by the compiled kernels and by :meth:`views`.
    """

    def __init__(self, sizes):
        self.sizes = tuple(int(d) for d in sizes)
        rows, at, units = [], 0, 0
        for d_in, d_out in zip(self.sizes[:-1], self.sizes[1:]):
            rows.append((d_in, d_out, at, at + d_out * d_in, units))
            at += d_out * d_in + d_out
            units += d_out
        self.table = np.array(rows, dtype=np.int64).reshape(-1, 5)
        self.table.flags.writeable = False
        self.size = at

    # A layout never changes, and its table must stay read-only whatever copies it: the
    # compiled kernels are specialised on that flag, and a writable copy would compile
    # them all a second time.
    def __reduce__(self):
        return Layout, (self.sizes,)

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self

    def __setattr__(self, name, value):
        if name in self.__dict__:
            raise AttributeError(f"a Layout is fixed; make a new one for other sizes (tried to set {name})")
        super().__setattr__(name, value)

    @property
    def depth(self):
        """Number of weight layers T."""
        return len(self.sizes) - 1

    @property
    def macs(self):
        """Multiply-adds of one sample's forward sums, ``sum_k d_k d_{k+1}``."""
        return sum(d_in * d_out for d_in, d_out in zip(self.sizes[:-1], self.sizes[1:]))

    def layers(self):
        """The rows of :attr:`table` as :class:`Layer` tuples, one per weight layer."""
        return [Layer(*row) for row in self.table.tolist()]

    def samples_per_chunk(self, itemsize):
        """How many samples' per-example gradients (``size`` values of ``itemsize`` bytes
        each) fit in :data:`PER_EXAMPLE_BYTES`, at least one."""
        return max(1, PER_EXAMPLE_BYTES // (self.size * itemsize))

    def weight_shape(self, k):
        return (self.sizes[k + 1], self.sizes[k])

    def views(self, flat):
        """Per-layer views ``(W, b)`` of a flat vector laid out like ``theta`` (a NumPy or a
        device array)."""
        W, b = [], []
        for layer in self.layers():
            W.append(flat[layer.w_at:layer.b_at].reshape(layer.d_out, layer.d_in))
            b.append(flat[layer.b_at:layer.b_at + layer.d_out])
        return W, b
