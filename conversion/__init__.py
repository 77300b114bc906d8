"""Export, Lava simulation, verification, hybrid runner, hardware mapping and NIR (see
docs/architecture.md). Importing the package loads lava-dl once with its import-time prints on
stderr (:mod:`respike_nm.lavadl`), so that no conversion command writes them to stdout."""

from respike_nm.lavadl import import_slayer

import_slayer()
