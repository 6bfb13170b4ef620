"""The photo commands' settings that `colorize photos --help` shows: light, so help loads no numpy or PIL."""
# Photos the network colorizes at once; a batch holds only their network inputs (~140 kB each).
DEFAULT_BATCH_SIZE = 8
# Where `colorize photos --runner` lists what it did, in the output folder.
MANIFEST = "colorize_manifest.jsonl"
RUNNERS = ("DirectRunner", "DataflowRunner")
