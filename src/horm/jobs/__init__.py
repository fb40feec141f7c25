"""One runner for independent keyed jobs: labelling, sampling, TS benchmarks.

``run_jobs(items, Job(load, task), sink, JobOptions(...))`` runs ``task(obj, payload)``
for every ``(key, payload)`` whose key the sink does not skip. ``obj`` comes from
``load()``, called once per worker (an engine, a potential). Backends, chosen by options
only: ``serial`` (this process), ``process`` (long-lived local worker processes, one
thread each, killed and replaced on timeout or crash, dying with their parent) and
``ray`` (``"local"`` or a cluster address; batched actor calls). ``output_lock(out)``
makes a second runner on the same output fail at once, naming the holder's PID.
"""

from horm.jobs.lock import OutputLocked, output_lock
from horm.jobs.runner import run_jobs
from horm.jobs.spec import FAILURE_KINDS, Job, JobOptions, JobStats, Outcome, Sink

__all__ = ["FAILURE_KINDS", "Job", "JobOptions", "JobStats", "OutputLocked", "Outcome", "Sink", "output_lock",
           "run_jobs"]
