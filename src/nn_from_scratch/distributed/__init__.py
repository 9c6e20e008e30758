"""Data-parallel training over MPI: several processes, on one machine or many, each on its part of every batch.

Needs mpi4py and an MPI library, the ``distributed`` extra: ``pip install
mpi4py mpich`` (MPICH's wheel brings ``mpiexec``), or mpi4py built against a
cluster's own MPI (Open MPI, Intel MPI, Slurm's ``srun``).  Importing this
package does not import mpi4py; making a :class:`DataParallel` or a
:class:`Communicator` does, and starts MPI.

* :class:`DataParallel` wraps a model and its optimizer; given to
  ``NeuralNetwork(..., reduction=...)`` it makes ``fit`` data-parallel
  (:mod:`.data_parallel`);
* :mod:`.buckets`: the gradients in flat buffers, summed bucket by bucket,
  while the backward pass goes on;
* :mod:`.sync_batchnorm`: batch norms with the statistics of the whole
  global batch;
* :mod:`.sampler`: which samples each process takes, the same number of
  steps on every process;
* :mod:`.communicator`: MPI itself, with a timeout on every wait and Ctrl-C
  agreed on by every process.

``docs/distributed.md`` shows how to run it (``mpiexec``, Slurm), how to
choose the batch and learning rate, and what is synchronised.
"""
from .communicator import DEFAULT_TIMEOUT, Communicator, DeferredInterrupt, mpi
from .data_parallel import DEFAULT_BUCKET_MB, DataParallel
from .sampler import DistributedSampler, check_batches, split_batch
from .sync_batchnorm import SyncBatchNorm1d, SyncBatchNorm2d, convert_sync_batchnorm

__all__ = ["Communicator", "DEFAULT_BUCKET_MB", "DEFAULT_TIMEOUT", "DataParallel",
           "DeferredInterrupt", "DistributedSampler", "SyncBatchNorm1d", "SyncBatchNorm2d", "check_batches",
           "convert_sync_batchnorm", "mpi", "split_batch"]
