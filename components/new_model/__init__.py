"""The check that a candidate model is new: not the latest blessed model again, nor a copy of its bytes."""
ARTIFACT_TYPE = "colorize.NewModelCheck"   # "namespace.Name", as the Vertex compiler requires
FINGERPRINT = "model_fingerprint"           # custom property: SHA-256 of the candidate's SavedModel files
