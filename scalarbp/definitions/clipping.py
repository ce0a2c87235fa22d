"""The clipping rule, one definition for the gradient's global norm and for DP-SGD's
per-sample norms: a gradient of norm ``||g||`` is scaled by

    c = min(1, C / (||g|| + 1e-6))

(``torch.nn.utils.clip_grad_norm_``'s and Opacus' rule), and by 0 when its norm is NaN or
inf: such a gradient (a huge input whose units all die gives ``inf * 0``) is left out, so
that nothing escapes the bound.  Compiled code inlines :func:`clip_factor`; Python calls
the same function.
"""
import math

import numpy as np
from numba.extending import register_jitable

from ..jit import inlined


@register_jitable
def clip_factor(norm, clip):
    """``min(1, clip / (norm + 1e-6))``, and 0 for a norm that is NaN or inf."""
    return min(1.0, clip / (norm + 1e-6)) if np.isfinite(norm) else 0.0


@register_jitable
def clip_factors(norms, clip, factors):
    """:func:`clip_factor` of every per-sample norm (DP-SGD), into ``factors``."""
    for n in range(norms.shape[0]):
        factors[n] = clip_factor(norms[n], clip)


@inlined
def global_factor(squares, clip):
    """The factor that clips a gradient of squared norm ``squares`` to norm ``clip``; 1 for
    ``clip`` 0 (never clipped)."""
    return clip_factor(math.sqrt(squares), clip) if clip > 0 else 1.0


def clip_norm(grad, clip):
    """``grad *= global_factor`` when that is below 1, for the steps run from Python."""
    factor = global_factor(float(np.dot(grad.astype(np.float64), grad)), clip)
    if factor < 1:
        grad *= grad.dtype.type(factor)
