"""The check that a candidate model is new: not the latest blessed model again, nor a copy of its bytes."""
ARTIFACT_TYPE = "components.NewModelVerdict"  # importable by this name: components/__init__.py says why
FINGERPRINT = "model_fingerprint"           # custom property: SHA-256 of the candidate's SavedModel files
