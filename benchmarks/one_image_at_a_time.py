"""Imported first (before `common`, which loads torch) by a benchmark that times forwards one after another: it gets
OpenMP's brief spinning between layers, as the CLI's one-image commands do (`pydarknet.runtime.spin_between_layers`;
False where the user set OMP_WAIT_POLICY or GOMP_SPINCOUNT)."""
from pydarknet.runtime import spin_between_layers

SPINNING = spin_between_layers()
