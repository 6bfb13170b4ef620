"""The photo commands' settings that `colorize photos --help` shows: light, so help loads no numpy or PIL."""
# Photos the network colorizes at once: each adds its network inputs (~140 kB) and the network's
# working memory (~17 MB) while the batch runs.
DEFAULT_BATCH_SIZE = 8
# Where `colorize photos --runner` lists what it did, in the output folder.
MANIFEST = "colorize_manifest.jsonl"
RUNNERS = ("DirectRunner", "DataflowRunner")
