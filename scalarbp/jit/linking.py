"""Every compiled function of the package runs its own copies of its callees.

Numba compiles a callee (a ``@kernel``, a ``register_jitable`` definition, a ``prange``
loop's body) as a library of its own, and links a copy of it into each caller: the caller's
module is optimised with the copy in it, and the copy is ``linkonce_odr``, a weak symbol of
the caller's machine code.  A weak symbol is bound to the first definition of its name in
the process.  So the code a caller runs depends on what else the process has loaded:

* in the process that compiles the caller, the callee's own library came first, and the
  caller calls that standalone copy, optimised apart from it;
* in a process that loads the caller from the on-disk cache, no standalone copy exists, and
  the caller calls its own (or the copy of whichever cached caller was loaded first).

The copies are the same source optimised in different modules, and may round differently
where LLVM fuses a multiply and an add: the first run of an install gave a Poisson or
binary cross-entropy J one ulp from every later run's (``tests/test_kernel_cache.py``).

:func:`own_copies` makes the linked copies in the package's libraries ``internal`` once
their module is optimised, before its machine code is made: each caller then calls the code
it was optimised with, in every process, whatever was loaded before it.  The machine code
is the same; only the symbols' binding changes.  Libraries of other packages are left as
Numba makes them.
"""
import llvmlite.binding as ll
from numba.core import codegen

#: How Numba's name mangling begins a function of this package.
OURS = "_ZN8scalarbp"
#: Names of the copies a caller of the package holds: its callees, and its parallel loops'
#: bodies (Numba names these ``<dynamic>.__numba_parfor_gufunc_...``) with their wrappers.
COPIES = (OURS, "_ZN13_3cdynamic_3e", "__gufunc__.")
SHARED = (ll.Linkage.linkonce_odr, ll.Linkage.weak_odr)


def own_copies(module):
    """Make the callees' copies linked into ``module`` internal, if it is a library of the
    package (it defines a function of the package with external linkage)."""
    functions = [fn for fn in module.functions if not fn.is_declaration]
    if not any(fn.linkage == ll.Linkage.external and fn.name.startswith(OURS) for fn in functions):
        return
    for fn in functions:
        if fn.linkage in SHARED and fn.name.startswith(COPIES):
            fn.linkage = ll.Linkage.internal


def install():
    """Run :func:`own_copies` on every CPU library Numba finalises from now on (once)."""
    finalize = codegen.CPUCodeLibrary._finalize_final_module
    if getattr(finalize, "own_copies", False):
        return

    def _finalize_final_module(library):
        own_copies(library._final_module)
        finalize(library)
    _finalize_final_module.own_copies = True
    codegen.CPUCodeLibrary._finalize_final_module = _finalize_final_module
