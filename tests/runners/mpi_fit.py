"""Run under ``mpiexec -n R`` by ``tests/test_mpi.py``: one data-parallel fit, then one
JSON file per rank, ``DIR/rank<r>.json`` (``argv[2]`` is DIR), and each rank's stderr in
``DIR/rank<r>.err``: ranks writing to one pipe interleave their tracebacks mid-line.
``argv[1]`` picks the case:

* ``train``: a float64 and a float32 fit (Adam, L2, clipping, sample weights, a last
  minibatch of another size, shuffling), X read from a memmap; rank 0 checkpoints into DIR.
  Prints the digest of each net's weights, its loss history and how often it saved.
* ``disagree``: rank 1 builds its net from another seed (the ranks must refuse to train).
* ``bad-input``: rank 1's X has a wrong width (it fails before training).
* ``fail``: rank 1's callback raises after the first epoch (during training).
* ``uneven``: the ``train`` fit in float64 with batches of 30 (8 leaves of 4 and 3 samples).
* ``differ-<what>``: rank 1 differs in one fit argument or in its data (the ranks must refuse
  to train, naming it); ``no-comm``: rank 1 calls ``fit`` without ``comm`` (rank 0 must stop
  both within ``distributed.MEET_SECONDS``, set to 5 s here).
* ``interrupt``: a long fit; after the first epoch each rank writes its process id to
  DIR/pid<r>, and the test then sends Ctrl-C (SIGINT) to rank 1 alone.  Prints where
  each rank stopped.
"""
import json
import os
import sys

import numpy as np
from mpi4py import MPI

import scalarbp as sb
from scalarbp import distributed
from scalarbp.datasets import Standardizer
from scalarbp.distributed import digest
from scalarbp.training import Callback, Checkpoint, TrainingInterrupted

comm = MPI.COMM_WORLD
rank = comm.Get_rank()
case, folder = sys.argv[1:3]
os.dup2(os.open(f"{folder}/rank{rank}.err", os.O_WRONLY | os.O_CREAT | os.O_TRUNC), sys.stderr.fileno())
rng = np.random.default_rng(0)
N = 203  # not a multiple of the batch: the last minibatch is smaller
X = rng.normal(size=(N, 6))
y = (X[:, 0] + X[:, 1] * X[:, 2] > 0).astype(int) + (X[:, 3] > 1)
weights = rng.uniform(0.5, 2.0, N)

saves = []
save = sb.MLP.save


def counted_save(net, path):
    saves.append(path)
    return save(net, path)


sb.MLP.save = counted_save


class Started(Callback):
    def on_epoch_end(self, epoch, history, net):
        if epoch == 0:
            with open(f"{folder}/pid{rank}", "w") as file:
                file.write(str(os.getpid()))


class Fail(Callback):
    def on_epoch_end(self, epoch, history, net):
        if rank == 1:
            raise OSError("disk full (a test's failure on rank 1)")


out = {"rank": rank}
if case == "train":
    if rank == 0:
        np.save(f"{folder}/X.npy", X)
    comm.Barrier()
    X_disk = np.load(f"{folder}/X.npy", mmap_mode="r")
    for dtype in ("float64", "float32"):
        net = sb.MLP([6, 16, 8, 3], seed=0, l2=1e-3, dtype=dtype)
        history = net.fit(X_disk, y, epochs=3, batch_size=32, seed=1, clip_norm=1.0, sample_weight=weights,
                          comm=comm, callbacks=[Checkpoint(f"{folder}/{dtype}.npz")])
        out[dtype] = {"weights": digest(net.theta), "loss": history.loss, "steps": net.optimizer.t}
    out["saves"] = len(saves)
elif case == "uneven":
    net = sb.MLP([6, 16, 8, 3], seed=0, l2=1e-3)
    history = net.fit(X, y, epochs=3, batch_size=30, seed=1, clip_norm=1.0, sample_weight=weights, comm=comm,
                      micro_shards=8)
    out["float64"] = {"weights": digest(net.theta), "loss": history.loss, "steps": net.optimizer.t}
elif case.startswith("differ-"):
    other = rank == 1
    net = sb.MLP([6, 16, 3], seed=0)
    args = dict(epochs=2, batch_size=32, seed=1, comm=comm)
    what = case.removeprefix("differ-")
    if what == "validation":  # each rank its own validation data, stopping early on it
        args.update(validation_data=(X[rank::2], y[rank::2]), early_stopping=True, patience=1)
    elif what == "clip_norm":
        args["clip_norm"] = 2.0 if other else 1.0
    elif what == "warmup_steps":
        args["warmup_steps"] = 5 if other else 0
    elif what == "schedule":
        args["schedule"] = sb.schedules.ReduceOnPlateau(patience=1 if other else 2)
    elif what == "data":
        X = X * (2.0 if other else 1.0)
    elif what == "targets":
        y = np.roll(y, 1) if other else y
    elif what == "sample_weights":
        args["class_weight"] = {0: 2.0} if other else None
    elif what == "standardizer":
        net.standardizer = Standardizer().fit(X[:100] if other else X)
    net.fit(X, y, **args)
elif case == "no-comm":
    distributed.MEET_SECONDS = 5.0
    net = sb.MLP([6, 16, 3], seed=0)
    net.fit(X, y, epochs=1, batch_size=32, seed=1, comm=None if rank == 1 else comm)
    comm.Barrier()  # (rank 1 then waits here, as a program would at its next collective)
elif case == "disagree":
    net = sb.MLP([6, 16, 3], seed=rank)
    net.fit(X, y, epochs=1, batch_size=32, seed=1, comm=comm)
elif case == "bad-input":
    net = sb.MLP([6, 16, 3], seed=0)
    net.fit(X[:, :5] if rank == 1 else X, y, epochs=1, batch_size=32, seed=1, comm=comm)
elif case == "fail":
    net = sb.MLP([6, 16, 3], seed=0)
    net.fit(X, y, epochs=3, batch_size=32, seed=1, comm=comm, callbacks=[Fail()])
elif case == "interrupt":
    net = sb.MLP([6, 64, 3], seed=0)
    try:
        net.fit(np.tile(X, (20, 1)), np.tile(y, 20), epochs=10 ** 6, batch_size=32, seed=1, comm=comm,
                callbacks=[Started()])
    except TrainingInterrupted as err:
        out["interrupted"] = [net.epochs_trained, net.epoch_steps, digest(net.theta), str(err)]
with open(f"{folder}/rank{rank}.json", "w") as file:
    json.dump(out, file)
