"""scalarbp: backpropagation in scalar form, compiled by Numba, checked against NumPy."""
import sys

from .bench import timing
from .definitions import activations, clipping, layout, losses
from .diagnostics import compare, explain, gradcheck as _gradcheck, notation
from .diagnostics.gradcheck import gradcheck
from .model import MLP, persistence
from .training import distributed, lbfgs, optimizers, options, schedules

#: Modules that moved into folders, importable at their old names too (``scalarbp.timing``).
MOVED = {"activations": activations, "clipping": clipping, "losses": losses, "layout": layout,
         "timing": timing, "compare": compare, "explain": explain, "gradcheck": _gradcheck, "notation": notation,
         "optimizers": optimizers, "options": options, "schedules": schedules, "distributed": distributed,
         "lbfgs": lbfgs, "persistence": persistence}
for _name, _module in MOVED.items():
    sys.modules[f"{__name__}.{_name}"] = _module

__all__ = ["MLP", "gradcheck"]
__version__ = "0.1.0"
