"""The EndpointPusher's rollout: a blessed model reaches a Vertex AI Endpoint's users only after it answered.

TFX's Vertex Pusher uploads the model and deploys it with its traffic share in one call, and
undeploys nothing. This pusher (component.py, executor.py, rollout.py) keeps TFX's exec
properties and custom_config, and adds ROLLOUT_KEY to it: how many of this pipeline's models
stay deployed, and the label that marks a Model as this pipeline's.
"""
ROLLOUT_KEY = "colorize_rollout"  # custom_config entry: {"keep_models": N, "owner": LABEL_VALUE}
OWNER_LABEL = "colorize-pipeline"  # label of every Model this pusher uploads; its value: the pipeline's name
PROBE_SUFFIX = "-probe"  # the probe endpoint's display name: the endpoint's, with this suffix
