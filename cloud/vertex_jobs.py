"""Submits and schedules a compiled pipeline on Vertex AI Pipelines (google-cloud-aiplatform), and
lists, pauses, resumes and deletes its schedules.

All build the request with aiplatform's own objects (PipelineJob, PipelineJobSchedule);
a dry run stops just before the API call and returns the request that call would send.
"""
import json
import math
import re
from typing import Any, Dict, List, Optional

from google.protobuf import json_format

from pipelines import cloud_config
from pipelines import config as config_lib


def template_parameters(template_path: str) -> Dict[str, Any]:
  """The runtime parameters a compiled PipelineJob JSON declares (name -> definition)."""
  with open(template_path) as f:
    template = json.load(f)
  if "pipelineSpec" not in template:
    raise config_lib.ConfigError(
        f"{template_path} is not a Vertex AI PipelineJob (no pipelineSpec); compile it with --target vertex")
  return template["pipelineSpec"]["root"].get("inputDefinitions", {}).get("parameters", {})


def parameter_type(name: str, definition: Dict[str, Any]) -> str:
  """INT, DOUBLE or STRING: a declared runtime parameter's type (PipelineSpec 2.0 or 2.1 spelling)."""
  ptype = definition.get("type") or _NEW_TYPES.get(definition.get("parameterType", ""))
  if ptype not in ("INT", "DOUBLE", "STRING"):
    raise config_lib.ConfigError(f"runtime parameter {name} has type {definition}, not INT, DOUBLE or STRING")
  return ptype


def typed_value(name: str, value: Any, ptype: str) -> Any:
  """A runtime parameter's value (e.g. the text of --param NAME=VALUE) as its declared type."""
  try:
    if ptype == "INT":
      if isinstance(value, float) and not value.is_integer():
        raise ValueError(value)
      number = int(value)
      if not -2**63 <= number < 2**63:  # the PipelineJob's values are 64-bit
        raise ValueError(value)
      return number
    if ptype == "DOUBLE":
      number = float(value)
      if not math.isfinite(number):
        raise ValueError(value)
      return number
  except (TypeError, ValueError) as e:
    raise config_lib.ConfigError(
        f"runtime parameter {name} must be {'an integer' if ptype == 'INT' else 'a number'}, got {value!r}") from e
  return str(value)


def _check_with_config(cfg: config_lib.PipelineConfig, values: Dict[str, Any]) -> None:
  """Runtime parameter values hold to the rules their config keys hold to (ranges, choices, a gs://
  data root): a value the config would refuse fails the job only after it has started.
  """
  from components import run_parameters
  keys = {"data_root": "ingest", **dict.fromkeys(run_parameters.TYPES, "train")}
  given = cfg.to_dict()
  for name, value in values.items():
    if name in keys:
      given[keys[name]][name] = value
  try:
    cloud_config.require(config_lib.from_dict(given))
  except config_lib.ConfigError as e:
    raise config_lib.ConfigError(f"--param {', '.join(sorted(values))}: {e}") from e


def check_run_parameters(values: Dict[str, Any]) -> None:
  """The Trainer's runtime parameters among `values` hold to their rules (trainer/settings.py) when
  no config is at hand (a rehearsal): otherwise a bad one fails only when its step runs.
  """
  from components import run_parameters
  from trainer import settings
  train = {name: values[name] for name in run_parameters.TYPES if name in values}
  try:
    settings.from_dict(train)
  except config_lib.ConfigError as e:
    raise config_lib.ConfigError(f"runtime parameters {', '.join(sorted(train))}: {e}") from e


def pipeline_job(cfg: config_lib.PipelineConfig, template_path: str,
                 parameter_values: Optional[Dict[str, Any]] = None, job_id: Optional[str] = None,
                 credentials=None, api_endpoint: Optional[str] = None, api_transport: Optional[str] = None):
  """An aiplatform.PipelineJob for the compiled template; nothing is sent yet."""
  cloud = cloud_config.require(cfg)
  parameter_values = dict(parameter_values or {})
  declared = template_parameters(template_path)
  unknown = sorted(set(parameter_values) - set(declared))
  if unknown:
    raise config_lib.ConfigError(
        f"the pipeline has no runtime parameter {unknown}; it declares {sorted(declared) or 'none'}")
  parameter_values = {name: typed_value(name, value, parameter_type(name, declared[name]))
                      for name, value in parameter_values.items()}
  _check_with_config(cfg, parameter_values)
  from google.cloud import aiplatform

  _init(cloud, credentials, api_endpoint, api_transport)
  return aiplatform.PipelineJob(
      display_name=cfg.pipeline_name,
      template_path=template_path,
      job_id=job_id,
      pipeline_root=cfg.pipeline_root,
      parameter_values=parameter_values,
      enable_caching=cfg.enable_cache,
      labels=dict(cloud.labels) or None,
      encryption_spec_key_name=cloud.encryption_key or None,
      project=cloud.project,
      location=cloud.region,
      credentials=credentials,
  )


_NEW_TYPES = {"STRING": "STRING", "NUMBER_INTEGER": "INT", "NUMBER_DOUBLE": "DOUBLE"}


def _init(cloud, credentials=None, api_endpoint=None, api_transport=None) -> None:
  from google.cloud import aiplatform

  # Only what is given is set: aiplatform.init keeps earlier values for arguments passed as None.
  init = {"project": cloud.project, "location": cloud.region}
  if credentials is not None:
    init["credentials"] = credentials
  if api_endpoint:
    init["api_endpoint"] = api_endpoint
  if api_transport:
    init["api_transport"] = api_transport
  aiplatform.init(**init)


SCHEDULE_ACTIONS = ("pause", "resume", "delete")


def list_schedules(cfg: config_lib.PipelineConfig, **client) -> List[Dict[str, Any]]:
  """The pipeline schedules of cloud.project in cloud.region, newest first."""
  cloud = cloud_config.require_project(cfg)
  _init(cloud, **client)
  from google.cloud import aiplatform
  found = aiplatform.PipelineJobSchedule.list(order_by="create_time desc", project=cloud.project,
                                              location=cloud.region)
  return [_schedule_summary(s) for s in found]


def change_schedule(cfg: config_lib.PipelineConfig, schedule_id: str, action: str, **client) -> Dict[str, Any]:
  """Pauses, resumes or deletes a schedule (its id or resource name); returns it as it was before deletion,
  or as it is after a pause or resume.
  """
  if action not in SCHEDULE_ACTIONS:
    raise ValueError(f"action must be one of {SCHEDULE_ACTIONS}, got {action!r}")
  cloud = cloud_config.require_project(cfg)
  named = re.fullmatch(r"projects/([^/]+)/locations/([^/]+)/schedules/([^/]+)", schedule_id)
  if "/" in schedule_id and not named:
    raise config_lib.ConfigError(f"{schedule_id!r} is neither a schedule id nor projects/P/locations/L/schedules/ID")
  if named and named.group(2) != cloud.region:
    raise config_lib.ConfigError(f"schedule {schedule_id} is in {named.group(2)}, not in cloud.region "
                                 f"{cloud.region}: give --region {named.group(2)}")
  _init(cloud, **client)
  from google.cloud import aiplatform
  schedule_ = aiplatform.PipelineJobSchedule.get(schedule_id, project=cloud.project, location=cloud.region)
  if action == "delete":
    summary = _schedule_summary(schedule_)
    schedule_.delete()
    return dict(summary, state="DELETED")
  getattr(schedule_, action)()
  schedule_ = aiplatform.PipelineJobSchedule.get(schedule_.resource_name)
  return _schedule_summary(schedule_)


def _schedule_summary(schedule_) -> Dict[str, Any]:
  resource = schedule_.gca_resource
  return {"name": resource.name, "display_name": resource.display_name, "state": resource.state.name,
          "cron": resource.cron,
          "next_run_time": resource.next_run_time.isoformat() if resource.next_run_time else None,
          "started_runs": resource.started_run_count}


def submit(job, cfg: config_lib.PipelineConfig, dry_run: bool = False) -> Dict[str, Any]:
  """Creates the PipelineJob run (or, with dry_run, returns the request it would send)."""
  cloud = cloud_config.require(cfg)
  if dry_run:
    # The same field PipelineJob.submit sets before it calls the API.
    if cloud.service_account:
      job._gca_resource.service_account = cloud.service_account
    if cloud.network:
      job._gca_resource.network = cloud.network
    return _request(cloud, "CreatePipelineJob", f"{job._parent}/pipelineJobs", {"pipelineJobId": job.job_id},
                    job._gca_resource)
  job.submit(service_account=cloud.service_account or None, network=cloud.network or None)
  return {"name": job.resource_name, "console": job._dashboard_uri()}


def schedule(job, cfg: config_lib.PipelineConfig, cron: str, display_name: str,
             max_concurrent_runs: int = 1, dry_run: bool = False) -> Dict[str, Any]:
  """Creates a PipelineJobSchedule running `job` on `cron` (or returns the request, with dry_run)."""
  cloud = cloud_config.require(cfg)
  check_cron(cron)
  if max_concurrent_runs < 1:
    raise config_lib.ConfigError(f"--max-concurrent-runs must be >= 1, got {max_concurrent_runs}")
  from google.cloud import aiplatform

  schedule_ = aiplatform.PipelineJobSchedule(pipeline_job=job, display_name=display_name)
  if dry_run:
    # The fields PipelineJobSchedule.create sets before it calls the API.
    resource = schedule_._gca_resource
    resource.cron = cron
    resource.max_concurrent_run_count = max_concurrent_runs
    if cloud.service_account:
      resource.create_pipeline_job_request.pipeline_job.service_account = cloud.service_account
    if cloud.network:
      resource.create_pipeline_job_request.pipeline_job.network = cloud.network
    return _request(cloud, "CreateSchedule", f"{schedule_._parent}/schedules", {}, resource)
  schedule_.create(cron=cron, max_concurrent_run_count=max_concurrent_runs,
                   service_account=cloud.service_account or None, network=cloud.network or None)
  return {"name": schedule_.resource_name, "console": schedule_._dashboard_uri()}


def _request(cloud, method: str, path: str, query: Dict[str, str], resource) -> Dict[str, Any]:
  """The REST form of the call: what goes over the wire (gRPC carries the same message)."""
  query_string = "&".join(f"{k}={v}" for k, v in query.items())
  service = "PipelineService" if method == "CreatePipelineJob" else "ScheduleService"
  return {
      "method": f"google.cloud.aiplatform.v1.{service}.{method}",
      "http": f"POST https://{cloud.region}-aiplatform.googleapis.com/v1/{path}"
              + (f"?{query_string}" if query_string else ""),
      # Serialised as the REST transport does (integers for enums, unset fields left out).
      "body": json_format.MessageToDict(type(resource).pb(resource), use_integers_for_enums=True),
  }


def check_cron(cron: str) -> None:
  fields = cron.split()
  if fields and (fields[0].startswith("TZ=") or fields[0].startswith("CRON_TZ=")):
    fields = fields[1:]
  if len(fields) != 5:
    raise config_lib.ConfigError(
        f"--cron must have 5 fields (minute hour day-of-month month day-of-week), "
        f"optionally prefixed with TZ=Area/City, got {cron!r}")
