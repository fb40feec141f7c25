"""ASE calculators over horm's potentials, the floor every search and sampler stands on.

:mod:`~horm.calculators.base`: :class:`~horm.calculators.base.HessianCalculator`, the interface
(an ASE calculator with ``get_hessian`` and call counters).
:mod:`~horm.calculators.potential`: :class:`~horm.calculators.potential.HormCalculator` wraps a
trained model, a shipped model by name, xTB or DFT as an ASE calculator with ``get_hessian`` (eV,
Å, eV/Å, eV/Å²), with the domain checks of :mod:`horm.models.domain`;
:func:`~horm.calculators.potential.load_potential` builds one from a spec (``xtb``, ``dft``, a model
file or name, or ``ase:module:factory``). :mod:`~horm.calculators.ase_adapter`:
:class:`~horm.calculators.ase_adapter.ASEPotential` puts any ASE calculator (ORCA, Gaussian, a
foundation MLIP) behind the same interface, with a counted finite-difference Hessian when it has
none. Sampling (:mod:`horm.sample`), TS search (:mod:`horm.ts`), active learning and interop
import it from here, never from the TS package.
"""
