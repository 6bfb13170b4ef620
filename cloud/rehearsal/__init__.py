"""`colorize rehearse`: a compiled Vertex AI pipeline (PipelineJob JSON) run on this machine, task by task,
the way the Vertex launcher runs it (engine.py), in a copy of the project image's tree (image.py), with
the Trainer's Vertex AI Training job run as local processes from its own worker-pool spec (vertex_training.py).
"""
