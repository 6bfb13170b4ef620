"""The data gate: a span's statistics against the schema, its shares and the last accepted span, before training."""
