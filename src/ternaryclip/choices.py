"""Names of the choices users make, importable without torch or numpy (the CLI parses them before any work)."""

RULES = ("absmean", "absmean2", "twn")
GRANULARITIES = ("tensor", "channel", "group")
SCOPES = ("all", "ffn")
PACKINGS = ("2bit", "base3")  # ternary codes in a .tclip: 2 bits each, or 5 to a byte
FLOAT_DTYPES = ("fp32", "fp16")  # the non-ternary tensors of a .tclip
# runtime activations: int8 (W1.58-A8), float (W1.58-A16) or rounded to bf16 (W1.58-A16 on AMX-BF16 tiles)
MODES = ("fast", "exact", "bf16")
PRECISIONS = ("fp32", "bf16", "fp16")  # training autocast
