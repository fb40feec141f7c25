"""Transition-state search with model Hessians (Fig. 2 of the HORM paper).

Stages, each callable alone: :mod:`~horm.ts.path` (geodesic/IDPP interpolation, CI-NEB),
:mod:`~horm.ts.tsopt` (Sella order-1 saddle search, Hessian from the potential),
:mod:`~horm.ts.irc` (Sella IRC both ways, relaxed ends), :mod:`~horm.ts.verify` (bond
graphs, intended/unintended, barrier, aligned RMSD). :mod:`~horm.ts.workflow` chains them
for one reaction and :mod:`~horm.ts.record` keeps its record (calls per stage, by level);
with a reference (``run_reaction(..., refine=calc)``), :mod:`~horm.ts.refined` lets the model
propose and the reference refine, check and judge (stages in :mod:`~horm.ts.refine`); :mod:`~horm.ts.benchmark` runs a reaction set and
:mod:`~horm.ts.report` summarises it; the calculators they run on are in :mod:`horm.calculators`.
:mod:`~horm.ts.muller_brown` is an analytic test surface. Sella is imported
only when a TS optimisation or IRC runs.
"""
