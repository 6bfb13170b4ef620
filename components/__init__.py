"""The pipeline's own TFX components (ingest, data gate, embed, new-model check, report, serving gate,
card) and its custom artifact types.

TFX's Vertex AI / Kubeflow v2 entrypoint finds a custom artifact type's class by its TYPE_NAME,
read as an import path ("components.ColorizationReport": this package's attribute), and the
compiler accepts only "namespace.Name" type names; so each custom type is reachable here, imported
only when asked for (importing this package stays free of TFX).
"""
_ARTIFACT_TYPES = {
    "ColorizationReport": "components.report.component",
    "ModelCardArtifact": "components.model_card.component",
    "NewModelVerdict": "components.new_model.component",
}


def __getattr__(name):
  if name in _ARTIFACT_TYPES:
    import importlib
    return getattr(importlib.import_module(_ARTIFACT_TYPES[name]), name)
  raise AttributeError(f"module 'components' has no attribute {name!r}")
