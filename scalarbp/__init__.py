"""scalarbp: backpropagation in scalar form, compiled by Numba, checked against NumPy."""
from .gradcheck import gradcheck
from .model import MLP

__all__ = ["MLP", "gradcheck"]
__version__ = "0.1.0"
