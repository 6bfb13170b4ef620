"""What the Trainer writes beside its TensorBoard logs (the ModelRun artifact), for its readers."""
# JSON: the training's settings ("config"), strategy, replicas, global batch, steps, weights digest.
SUMMARY_FILE = "training.json"
