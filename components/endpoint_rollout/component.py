"""EndpointPusher: TFX's Vertex Pusher component (same inputs, outputs and parameters) with executor.py."""
from tfx.dsl.components.base import executor_spec
from tfx.extensions.google_cloud_ai_platform.pusher import component as vertex_pusher

from components.endpoint_rollout import executor


class EndpointPusher(vertex_pusher.Pusher):
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)
