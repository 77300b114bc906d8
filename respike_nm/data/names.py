"""Dataset names, without the readers: what ``--dataset`` accepts, importable without torch (for
the command line's choices and ``--help``). :mod:`respike_nm.data.factory` maps each to its reader."""

SYNTHETIC_DATASETS = ("synthetic-motion", "synthetic-binding")
VIDEO_DATASETS = ("ucf101", "hmdb51", "kinetics", "folder")
DATASETS = (*SYNTHETIC_DATASETS, *VIDEO_DATASETS, "cache")
