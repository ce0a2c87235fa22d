"""The privacy ledger: every step a net's parameters ever took, and the epsilon they spent.

DP-SGD's guarantee is about the weights, whatever produced them, so the ledger travels
with the net (:attr:`scalarbp.MLP.privacy_ledger`): through ``fit``, ``partial_fit``,
resumed training, optimiser switches, data of another size and another sigma, and the
model file.  Each entry is a run of steps of one kind:

* ``"poisson"``: DP-SGD steps on Poisson-sampled batches at rate ``q`` with noise
  multiplier ``noise``, their noise and batches from a secret key: what the analysis covers;
* ``"shuffle"``: DP-SGD steps on fixed-size shuffled batches, which the Poisson analysis
  does not cover;
* ``"reproducible"``: DP-SGD steps whose noise and batches come from a known seed
  (``dp_insecure_seed``): anyone with the seed can subtract the noise;
* ``"non-private"``: ordinary steps (and DP-SGD steps with ``noise`` 0);
* ``"unknown"``: parameters from outside the ledger (assigned ``theta``, ``weights`` or
  ``biases``, a model file written before the ledger, ``from_sklearn``).

Epsilon composes the ``"poisson"`` runs with ``dp-accounting`` (RDP, or PLD); any entry of
another kind makes it ``inf``.  A new net's ledger is empty (epsilon 0): its
initialisation does not depend on the data.
"""
import math
import numbers


KINDS = ("poisson", "shuffle", "reproducible", "non-private", "unknown")

#: The most entries a ledger holds in a model file (bounded memory whatever a file claims).
MAX_ENTRIES = 10_000


class Ledger:
    """Runs of steps, in order: ``entries`` is a list of ``(kind, steps, q, noise)``."""

    def __init__(self, entries=()):
        self.entries = [tuple(entry) for entry in entries]

    @classmethod
    def unknown(cls):
        """The ledger of parameters that came from outside it: epsilon is inf."""
        return cls([("unknown", 0, 0.0, 0.0)])

    def __repr__(self):
        return f"Ledger({self.entries})"

    def __eq__(self, other):
        return isinstance(other, Ledger) and self.entries == other.entries

    def copy(self):
        return Ledger(self.entries)

    @property
    def steps(self):
        """Steps recorded, of every kind."""
        return sum(entry[1] for entry in self.entries)

    def record(self, kind, steps, q=0.0, noise=0.0):
        """Add ``steps`` steps of ``kind`` (a DP-SGD step with noise 0 is non-private),
        merged into the last run when it is of the same kind and settings."""
        if kind in ("poisson", "shuffle", "reproducible") and noise == 0:
            kind = "non-private"
        if kind not in ("poisson", "shuffle", "reproducible"):
            q = noise = 0.0
        if steps == 0 and kind != "unknown":
            return
        entry = (kind, int(steps), float(q), float(noise))
        if self.entries and self.entries[-1][0] == kind and self.entries[-1][2:] == entry[2:]:
            self.entries[-1] = (kind, self.entries[-1][1] + entry[1], *entry[2:])
        else:
            self.entries.append(entry)

    def uncovered(self):
        """Why epsilon is inf (the kinds of step the analysis does not cover, with their
        counts), or None when every step is a covered DP-SGD step."""
        counts = {}
        for kind, steps, _, _ in self.entries:
            if kind != "poisson":
                counts[kind] = counts.get(kind, 0) + steps
        if not counts:
            return None
        return ", ".join("parameters of unknown history" if kind == "unknown" else f"{steps} {kind} steps"
                         for kind, steps in counts.items())

    def events(self, extra=()):
        """The ``dp-accounting`` events of the covered runs, and of ``extra`` ``(q, noise,
        steps)`` runs still to come."""
        dp_accounting = _dp_accounting()
        runs = [(q, noise, steps) for kind, steps, q, noise in self.entries if kind == "poisson"] + list(extra)
        return [dp_accounting.SelfComposedDpEvent(
            dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(noise)), steps)
            for q, noise, steps in runs if steps]

    def epsilon(self, delta, accountant="rdp", extra=()):
        """The epsilon spent at ``delta`` by every step recorded (and ``extra`` runs, see
        :meth:`events`): 0 for no step, inf when any step is not covered."""
        if self.uncovered() is not None:
            return math.inf
        return compose(self.events(extra), delta, accountant)

    def check_target(self, target_epsilon, delta):
        """Raise ``ValueError`` when what is recorded already spends ``target_epsilon``."""
        spent = self.epsilon(delta)
        if spent >= target_epsilon:
            raise ValueError(f"target_epsilon {target_epsilon} cannot be met: the net has already spent epsilon "
                             f"{spent:.4g}" + (f" ({self.uncovered()})" if self.uncovered() else ""))

    def to_config(self):
        """The entries as JSON for a model file."""
        return [list(entry) for entry in self.entries]

    @classmethod
    def from_config(cls, config):
        """The ledger a model file's entry describes, every field checked."""
        if not isinstance(config, list) or len(config) > MAX_ENTRIES:
            raise ValueError(f"privacy_ledger must be a list of at most {MAX_ENTRIES} entries")
        entries = []
        for entry in config:
            if not (isinstance(entry, list) and len(entry) == 4 and entry[0] in KINDS
                    and isinstance(entry[1], int) and not isinstance(entry[1], bool) and 0 <= entry[1] < 2 ** 53
                    and all(isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
                            for v in entry[2:]) and entry[2] <= 1):
                raise ValueError(f"privacy_ledger entry {str(entry)[:100]} is not [kind, steps, q, noise]")
            entries.append(tuple(entry))
        return cls(entries)


def _dp_accounting():
    try:
        import dp_accounting
    except ImportError:
        raise ImportError("privacy accounting needs dp-accounting: pip install 'scalarbp[privacy]'") from None
    return dp_accounting


def compose(events, delta, accountant="rdp"):
    """Epsilon at ``delta`` of ``events`` composed (``dp-accounting``'s RDP or PLD accountant)."""
    dp_accounting = _dp_accounting()
    if not events:
        return 0.0
    spent = dp_accounting.rdp.RdpAccountant() if accountant == "rdp" else dp_accounting.pld.PLDAccountant()
    spent.compose(dp_accounting.ComposedDpEvent(events))
    return float(spent.get_epsilon(delta))


def epsilon(q, noise_multiplier, steps, delta, accountant="rdp"):
    """The epsilon spent by ``steps`` Poisson-sampled Gaussian steps at ``delta``."""
    return Ledger([("poisson", steps, q, noise_multiplier)]).epsilon(delta, accountant)


def noise_for(target_epsilon, q, steps, delta, ledger=None):
    """The smallest noise multiplier whose ``steps`` steps at rate q, after what ``ledger``
    already holds, spend at most ``target_epsilon`` in all (bisection)."""
    ledger = Ledger() if ledger is None else ledger
    ledger.check_target(target_epsilon, delta)
    low, high = 0.0, 1.0
    while ledger.epsilon(delta, extra=[(q, high, steps)]) > target_epsilon:
        low, high = high, 2 * high
        if high > 1e4:
            raise ValueError(f"no noise multiplier below 1e4 reaches epsilon {target_epsilon}")
    for _ in range(40):
        middle = (low + high) / 2
        if ledger.epsilon(delta, extra=[(q, middle, steps)]) > target_epsilon:
            low = middle
        else:
            high = middle
    return high
