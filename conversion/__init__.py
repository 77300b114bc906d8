"""Export, Lava simulation, verification, hybrid runner, hardware mapping and NIR (see
docs/architecture.md). Importing the package imports nothing: each module loads what it needs, and
the modules that need lava-dl (``export``, ``lava_sim`` and what imports them) load it through
:mod:`respike_nm.lavadl`, its import-time prints kept off stdout. So reading a manifest or a mapping
(``conversion.manifest``, ``conversion.mapping``) does not load Lava."""
