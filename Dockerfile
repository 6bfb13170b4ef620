# The project image: one image for every cloud step.
#  - Vertex AI Pipelines runs each pipeline step in it (command set by TFX's Kubeflow v2 compiler);
#  - Vertex AI Training runs the Trainer in it (command: python -m tfx.scripts.run_executor);
#  - Dataflow runs the Beam workers of ingestion and evaluation in it (--sdk_container_image),
#    started by the Beam SDK harness boot program, the ENTRYPOINT below.
# Build and push: see docs/vertex.md.

# The boot program must come from the same Beam release as the apache-beam Python package
# (requirements.lock). tensorflow/tfx ships the boot of the Beam it was built with; the lock
# moves apache-beam, so the matching boot is copied from the official Beam SDK image.
ARG BEAM_VERSION=2.74.0
FROM apache/beam_python3.10_sdk:${BEAM_VERSION} AS beam

FROM tensorflow/tfx:1.16.0

# Pipelines compiled on a laptop refer to project files (the schema, the demo data) under
# this folder; pipelines/cloud_config.py IMAGE_PROJECT_ROOT says the same.
WORKDIR /pipeline

# Exactly the locked dependency set (uv resolves nothing; pip's resolver does not finish on
# TFX). Its own layer, so editing the code does not reinstall TensorFlow. Compiled to bytecode
# here: every pipeline task is a new container, which would otherwise compile TensorFlow, Beam
# and TFX again before it starts (~11 CPU s).
COPY requirements.lock ./
RUN python -m pip install --no-cache-dir uv==0.13.9 \
 && python -m uv pip install --python "$(command -v python)" --no-cache --compile-bytecode -r requirements.lock

# The project itself, importable by path (run_fn, executor classes) from any working directory.
COPY . ./
RUN python -m uv pip install --python "$(command -v python)" --no-cache --no-deps -e . \
 && python -c "import components.ingest.executor, trainer.task, pipelines.pipeline"

COPY --from=beam /opt/apache/beam /opt/apache/beam
ENTRYPOINT ["/opt/apache/beam/boot"]
