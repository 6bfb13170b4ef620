"""The embedding stage: Examples -> the same Examples with Inception-ResNet-v2's class vector.

The custom properties of its output artifact (set by executor.py, printed by the run summary).
"""
WEIGHTS_PROPERTY = "embedding_weights"
FINGERPRINT_PROPERTY = "embedding_weights_fingerprint"
# Copied from the input Examples (the same examples, so the same counts, span and version).
COPIED_PROPERTIES = ("split_counts", "span", "version")
