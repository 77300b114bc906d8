"""The registered model kinds, importable without torch (the command line's choices and --help)."""

KINDS = ("hybrid", "ann", "snn")  # three registrations of one code path (ReSpikeSpec.kind)
