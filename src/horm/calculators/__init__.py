"""ASE calculators over horm's potentials, the floor every search and sampler stands on.

:mod:`~horm.calculators.potential`: :class:`~horm.calculators.potential.HormCalculator` wraps a
trained model, a shipped model by name, xTB or DFT as an ASE calculator with ``get_hessian`` (eV,
Å, eV/Å, eV/Å²), with the domain checks of :mod:`horm.models.domain`;
:func:`~horm.calculators.potential.load_potential` builds one from a spec (``xtb``, ``dft``, a model
file or name). Sampling (:mod:`horm.sample`), TS search (:mod:`horm.ts`), active learning and
interop import it from here, never from the TS package.
"""
