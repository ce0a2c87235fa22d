"""Where each layer's parameters live inside one flat parameter vector ``theta``.

Conventions, fixed once for the whole package (seed 001):

* ``sizes = (d_0, d_1, ..., d_T)`` lists the layer widths, input first.
* ``W[k]`` has shape ``(d_{k+1}, d_k)``: ``W[k][i, j] = w_ij^k`` joins unit ``j`` of layer
  ``k`` to unit ``i`` of layer ``k+1`` (the layout of ``torch.nn.Linear.weight``).
* ``b[k]`` has shape ``(d_{k+1},)``.

``theta`` stores ``W[0], b[0], W[1], b[1], ...`` back to back in C order, so that the
optimisers, the gradient checker and model files handle one vector, while the kernels
and the user see per-layer views of it.
"""
class Layout:
    """Offsets of every ``W[k]`` and ``b[k]`` in a flat vector, for layer widths ``sizes``."""

    def __init__(self, sizes):
        self.sizes = tuple(int(d) for d in sizes)
        self.offsets = []  # (weight offset, bias offset) per layer
        at = 0
        for d_in, d_out in zip(self.sizes[:-1], self.sizes[1:]):
            self.offsets.append((at, at + d_out * d_in))
            at += d_out * d_in + d_out
        self.size = at

    @property
    def depth(self):
        """Number of weight layers T."""
        return len(self.sizes) - 1

    def weight_shape(self, k):
        return (self.sizes[k + 1], self.sizes[k])

    def views(self, theta):
        """Per-layer views ``(W, b)`` of a flat vector laid out like ``theta``."""
        W, b = [], []
        for k, (w_at, b_at) in enumerate(self.offsets):
            d_out, d_in = self.weight_shape(k)
            W.append(theta[w_at:b_at].reshape(d_out, d_in))
            b.append(theta[b_at:b_at + d_out])
        return W, b
