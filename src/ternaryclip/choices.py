"""Names of the quantization choices, importable without torch (the CLI parses them before loading models)."""

RULES = ("absmean", "absmean2", "twn")
GRANULARITIES = ("tensor", "channel", "group")
SCOPES = ("all", "ffn")
