"""Deploy, probe, shift, trim: the calls the EndpointPusher makes to the Vertex AI API (aiplatform SDK).

How the new model is reached before users are. A public Vertex AI endpoint routes
`endpoints.predict` by its trafficSplit alone: PredictRequest has no deployed-model field (v1
and v1beta1), a model deployed at 0% gets no request, and the routes that name a deployed
model are `endpoints.explain` (needs an explanation spec; this model's JPEG answers have no
attributions) and `invoke` (dedicated endpoints and models uploaded with invokeRoutePrefix
only, which turns :predict off). So the new model is first deployed alone to a probe endpoint
(the endpoint's display name + PROBE_SUFFIX, found or created like the endpoint itself), where
`endpoints.predict` can reach nothing else, and asked to colorize the serving gate's photos
with the request `colorize photos --endpoint` sends (serving/endpoint.py), whose checks it must
pass: every answer a complete RGB JPEG of its photo's size. Then it is undeployed there, and
only a model that answered is deployed to the endpoint, with the configured share in the same
deployModel call (its trafficSplit): user traffic moves once, to a model that answered. The
probe costs one more deployment's start-up (minutes) per push; an empty endpoint costs nothing.

Each push creates its own probe endpoint and deletes it after the probe: two pushes to the same
endpoint at once (a schedule's run and a manual one) each probe their own model. A shared probe
endpoint let the second push undeploy the first one's model while it was being probed, or answer
its probe with the second model. A push killed while probing leaves its probe endpoint (and its
machines); the next push deletes every probe endpoint of this endpoint older than
PROBE_ORPHAN_SECONDS, which no live push reaches, and leaves younger ones to their push.

Which deployed models are this pipeline's: those whose Model carries OWNER_LABEL with this
pipeline's value (every Model this pusher uploads does). Models deployed by anyone else, and
those of TFX's stock pusher (no label), are never undeployed; they keep their share of the
traffic, scaled with the others.
"""
import contextlib
import logging
import os
import time
from typing import Any, Dict, Iterator, List, Optional, Sequence

from components import endpoint_rollout
from components import serving_gate

_NOT_DEPLOY_ARGUMENTS = ("endpoint_name", "project", "regions", "labels", "traffic_percentage")
_DISPLAY_NAME_LIMIT = 128
# Longer than a push's probe can take (a deployment's start-up, minutes; Vertex AI's deploy times out
# within an hour or two): a probe endpoint this old belongs to a push that is no longer running.
PROBE_ORPHAN_SECONDS = 6 * 3600


class RolloutError(RuntimeError):
  """The rollout stopped; the message (one line) says where, why, and what serves now."""


def roll_out(serving_args: Dict[str, Any], region: str, image: str, model_uri: str, keep_models: int,
             owner: str, job_labels: Dict[str, str]) -> str:
  """Uploads the SavedModel at model_uri, probes it, deploys it with its share and trims older models.

  -> the new Model's resource name. Raises RolloutError (one line) for every known failure.
  """
  from google.cloud import aiplatform

  name = serving_args["endpoint_name"]
  share = int(serving_args.get("traffic_percentage", 100))
  labels = {**serving_args.get("labels", {}), **job_labels}
  deploy_args = {k: v for k, v in serving_args.items() if k not in _NOT_DEPLOY_ARGUMENTS}
  unchanged = f"endpoint {name!r}'s traffic is unchanged"
  probe_name = probe_endpoint_name(name)
  with _api(f"finding or creating endpoint {name!r}", unchanged):
    aiplatform.init(project=serving_args["project"], location=region)
    endpoint = _endpoint(name, labels)
  with _api(f"deleting probe endpoints {probe_name!r} left by killed pushes", unchanged):
    _delete_orphaned_probes(probe_name)
  with _api(f"uploading {model_uri}", unchanged):
    model = aiplatform.Model.upload(display_name=f"{owner}-v{int(time.time())}", artifact_uri=model_uri,
                                    serving_container_image_uri=image, labels={endpoint_rollout.OWNER_LABEL: owner})
  with _api(f"creating probe endpoint {probe_name!r}", unchanged):
    probe_endpoint = aiplatform.Endpoint.create(display_name=probe_name, labels=labels)
  try:
    with _api(f"deploying {model.resource_name} to probe endpoint {probe_endpoint.resource_name}", unchanged):
      model.deploy(endpoint=probe_endpoint, deployed_model_display_name=model.display_name,
                   traffic_split={"0": 100}, **deploy_args)
    problem = _probe(probe_endpoint.resource_name)
  except BaseException:
    _delete_probe_after_failure(probe_endpoint)
    raise
  # force: its deployment is undeployed first, so no machines keep running.
  with _api(f"deleting probe endpoint {probe_endpoint.resource_name}",
            unchanged if problem is None else f"{unchanged}; the model did not answer correctly: {problem}"):
    probe_endpoint.delete(force=True)
  if problem is not None:
    raise RolloutError(f"the new model {model.resource_name} did not answer correctly on probe endpoint "
                       f"{probe_endpoint.resource_name}, so that was deleted and {unchanged}: {problem}")
  with _api(f"reading endpoint {endpoint.resource_name}", unchanged):
    endpoint = aiplatform.Endpoint(endpoint.resource_name)
    deployed = endpoint.list_models()
    ours = sorted((d for d in deployed if _owner(d.model) == owner), key=_deployed_order)
    kept = ours[-(keep_models - 1):] if keep_models > 1 else []
    others = [d for d in deployed if d not in ours]
    split = traffic_split(share, dict(endpoint.traffic_split), [d.id for d in kept], [d.id for d in others])
  with _api(f"deploying {model.resource_name} to {endpoint.resource_name} with traffic split {split}", unchanged):
    model.deploy(endpoint=endpoint, deployed_model_display_name=model.display_name, traffic_split=split,
                 **deploy_args)
  for old in (d for d in ours if d not in kept):
    with _api(f"undeploying older model {old.model} (deployed model {old.id}) from {endpoint.resource_name}",
              f"the new model serves with traffic split {split}; older models are still deployed"):
      # Out of the split already (the deploy's trafficSplit left it out): no traffic moves here.
      aiplatform.Endpoint(endpoint.resource_name).undeploy(deployed_model_id=old.id)
    logging.info("Undeployed %s (deployed model %s): %d of this pipeline's models stay", old.model, old.id,
                 keep_models)
  return model.resource_name


def probe_endpoint_name(endpoint_name: str) -> str:
  return endpoint_name[:_DISPLAY_NAME_LIMIT - len(endpoint_rollout.PROBE_SUFFIX)] + endpoint_rollout.PROBE_SUFFIX


def traffic_split(share: int, current: Dict[str, int], kept: Sequence[str], others: Sequence[str]) -> Dict[str, int]:
  """The trafficSplit of deployModel ("0": the new model): the new model gets `share`; kept older models of this
  pipeline and others' models share the rest in their current proportions; every other model gets 0.

  When none of them has traffic now, the rest goes to the newest kept model (the one to roll back to),
  and when there is none, the new model gets everything.
  """
  sharing = {i: current.get(i, 0) for i in [*kept, *others]}
  if not sum(sharing.values()):
    sharing = {kept[-1]: 1} if kept else {}
  rest = 100 - share if sharing else 0
  total = sum(sharing.values())
  scaled = {i: rest * v // total for i, v in sharing.items()} if total else {}
  # Whole percentages that add up to 100: the largest remainders get the points lost to rounding.
  for i in sorted(sharing, key=lambda i: -(rest * sharing[i] % total))[:rest - sum(scaled.values())]:
    scaled[i] += 1
  return {"0": 100 - rest, **{i: v for i, v in scaled.items() if v}}


def _endpoint(display_name: str, labels: Dict[str, str]):
  """The oldest endpoint of that display name, or a new one.

  Two first pushes at once both find none and create one each: each then takes the oldest of those
  listed with its own, and deletes its own when that is not the oldest (it is still empty), so both
  deploy to one endpoint.
  """
  from google.cloud import aiplatform
  found = _by_display_name(display_name)
  if found:
    return found[0]
  created = aiplatform.Endpoint.create(display_name=display_name, labels=labels)
  # With the new one added in case the listing does not show it yet.
  oldest = min([*_by_display_name(display_name), created], key=_created_order)
  if oldest.resource_name != created.resource_name:
    logging.info("Endpoint %s was created at the same time as %s; using the older one", created.resource_name,
                 oldest.resource_name)
    created.delete()
  return oldest


def _by_display_name(display_name: str) -> list:
  from google.cloud import aiplatform
  return sorted(aiplatform.Endpoint.list(filter=f"display_name={filter_literal(display_name)}"), key=_created_order)


def _created_order(endpoint) -> tuple:
  return endpoint.create_time.timestamp(), endpoint.resource_name


def _delete_probe_after_failure(probe_endpoint) -> None:
  """Deletes the probe endpoint of a push that failed; a failure here is logged, not raised, so the
  error that stopped the push is the one reported (a later push deletes the endpoint when it is old).
  """
  try:
    with _api(f"deleting probe endpoint {probe_endpoint.resource_name}", "it is left for a later push to delete"):
      probe_endpoint.delete(force=True)
  except RolloutError as e:
    logging.warning("%s", e)


def _delete_orphaned_probes(probe_name: str) -> None:
  """Deletes the probe endpoints of that display name older than PROBE_ORPHAN_SECONDS (see the module doc)."""
  for probe in _by_display_name(probe_name):
    age = time.time() - probe.create_time.timestamp()
    if age < PROBE_ORPHAN_SECONDS:
      logging.info("Probe endpoint %s was created %.0f s ago: another push is probing there; left to it",
                   probe.resource_name, age)
      continue
    logging.info("Deleting probe endpoint %s, left by a push killed %.0f s ago", probe.resource_name, age)
    probe.delete(force=True)


def filter_literal(text: str) -> str:
  """`text` as a string literal of a Vertex AI list filter (AIP-160): a quote or backslash in a
  display name would otherwise end the literal early or make the filter invalid.
  """
  return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _deployed_order(deployed) -> tuple:
  """Oldest first: by deploy time, then by id (Vertex AI's ids are numbers)."""
  return (deployed.create_time.timestamp() if deployed.create_time else 0.0, len(deployed.id), deployed.id)


def _owner(model_name: str) -> Optional[str]:
  from google.cloud import aiplatform
  return aiplatform.Model(model_name.split("@")[0]).labels.get(endpoint_rollout.OWNER_LABEL)


@contextlib.contextmanager
def _api(stage: str, state: str) -> Iterator[None]:
  """API failures within, as one RolloutError line: what was being done, why it failed, what serves now."""
  from google.api_core import exceptions as api_exceptions
  from google.auth import exceptions as auth_exceptions
  import requests
  try:
    yield
  except (api_exceptions.GoogleAPIError, auth_exceptions.GoogleAuthError, requests.RequestException) as e:
    raise RolloutError(f"Vertex AI: {stage} failed ({_describe(e)}); {state}") from e


def _probe(endpoint_resource: str) -> Optional[str]:
  """What is wrong with the probe endpoint's answer to the serving gate's JPEG and PNG with alpha (one
  request, as `colorize photos --endpoint` sends them), or None when both come back as they must.
  """
  from google.cloud.aiplatform import initializer

  from serving import endpoint as endpoint_lib
  config = initializer.global_config
  api_root = config.api_endpoint
  if api_root and "://" not in api_root:
    api_root = f"https://{api_root}"
  photos = []
  for name in (serving_gate.JPEG_PHOTO, serving_gate.ALPHA_PHOTO):
    with open(os.path.join(serving_gate.PHOTOS_DIR, name), "rb") as f:
      photos.append((name, f.read()))
  try:
    target = endpoint_lib.connect(endpoint_resource, credentials=config.credentials, api_root=api_root)
    target.max_instances = len(photos)
    answers: List[Any] = list(endpoint_lib.colorize(target, photos))
  except endpoint_lib.EndpointError as e:
    return str(e)
  wrong = [f"{name}: {answer}" for name, answer in answers if isinstance(answer, endpoint_lib.PhotoRejectedError)]
  return "; ".join(wrong) or None


def _describe(e: Exception) -> str:
  """One line for an API failure: the API's own message, or the connection's."""
  text = " ".join(str(getattr(e, "message", "") or e).split())
  return f"{type(e).__name__}: {text[:400]}"
