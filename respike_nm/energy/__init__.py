"""Energy accounting: operation counters and per-target estimates (the figures come from
:mod:`respike_nm.hardware`). ``PRECISIONS`` is here so that the command line reads it without torch."""

PRECISIONS = {  # precision -> (GPU key, FLOPs per MAC), (CMOS key, MACs per MAC)
    "fp32": (("flop_fp32", 2), ("mac_fp32", 1)),
    "fp16": (("flop_bf16", 2), ("mac_fp16", 1)),
    "int8": (("op_int8", 2), ("mac_int8", 1)),
}
