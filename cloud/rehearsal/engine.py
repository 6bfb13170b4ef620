"""Runs a compiled Vertex AI PipelineJob JSON here, task by task, as the Vertex launcher would.

Each container task runs as a subprocess with the command and arguments the JSON gives it
(TFX's own entrypoints: kubeflow_v2_run_executor, the file-based ExampleGen driver), in a copy
of the image's project folder, with an ExecutorInput built from the spec: parameters (constants,
runtime parameters, upstream output parameters, each checked against its declared type), input
artifacts with the URIs and metadata upstream executor outputs gave them, output URIs below the
pipeline root, the output metadata file. A task with a pre-cache check runs it first and its
answer (span, fingerprint, resolved input config) joins the task's parameters and cache key.
Resolver tasks evaluate their artifact queries and importers import, against a record of every
artifact earlier rehearsals in the same folder made (rehearsals.json): that record plays Vertex
ML Metadata, and its cache of finished executions plays Vertex's execution cache.

What cannot run here is said, not skipped: a JSON feature the rehearsal does not evaluate
(a loop, a sub-DAG, a condition or filter term it cannot read) fails the rehearsal.
"""
import dataclasses
import fcntl
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Optional

import yaml

from cloud import vertex_jobs
from cloud.rehearsal import image as image_lib
from imaging import tree
from schemas.config_fields import ConfigError

RECORD = "rehearsals.json"
# Artifact resource names as Vertex ML Metadata gives them; TFX's entrypoints hash them to MLMD ids.
ARTIFACT_NAME = "projects/rehearsal/locations/local/metadataStores/default/artifacts/{}"
# Legacy (PipelineSpec 2.0) parameter types and the field of a Value that carries each.
_VALUE_FIELD = {"STRING": "stringValue", "INT": "intValue", "DOUBLE": "doubleValue"}
_PLACEHOLDER = re.compile(r"\{\{\$(.*?)\}\}")
_FILTER_TERM = re.compile(r'^\s*([\w.]+)\s*=\s*("(?:[^"\\]|\\.)*"|\S+)\s*$')
_STATE_FILE = ".rehearsal.lock"
# Loaded by every step process (PYTHONPATH). In the image the project's editable install points at the
# image's own folder, the working folder here; this machine's points at its source tree, so it is
# dropped and imports resolve in the image copy only. Then the Vertex AI Training stand-in
# (vertex_training.py, loaded by path: no project package is imported before the step's own code).
_SITECUSTOMIZE = """import importlib.util
import sys
sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")]
_spec = importlib.util.spec_from_file_location("_rehearsal_vertex_training", {path!r})
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)
_module.install()
"""
# Executors that call a Vertex AI API the rehearsal does not stand in for (the prefix of their class path).
_NOT_DEPLOYED_HERE = ("deploys to a Vertex AI Endpoint, which is not rehearsed; "
                      "rehearse a template compiled with --no-deploy")
_NOT_REHEARSED_EXECUTORS = {
    "components.endpoint_rollout.": _NOT_DEPLOYED_HERE,  # the EndpointPusher this project compiles
    "tfx.extensions.google_cloud_ai_platform.pusher.": _NOT_DEPLOYED_HERE,  # TFX's own, in older templates
}

NOT_REHEARSED = (
    "not rehearsed: Dataflow (Beam steps ran on the DirectRunner in the step's process), GPUs and machine "
    "types (the training job's pools ran as CPU processes on this machine), the image build itself (the "
    "build context was copied, requirements.lock is this venv), IAM, service accounts, networks and "
    "encryption keys (the requests are checked, nothing enforces them), Cloud Storage (buckets are folders), "
    "Vertex AI Endpoint deployment (a template with one is refused)",
)


_TEMPLATE_LIMIT = 64_000_000  # bytes
# What the rehearsal walks, outermost first; runtimeConfig may be absent.
_MAPPINGS = ("pipelineSpec", "pipelineSpec.root", "pipelineSpec.root.dag", "pipelineSpec.root.dag.tasks",
             "pipelineSpec.components", "pipelineSpec.deploymentSpec", "pipelineSpec.deploymentSpec.executors",
             "runtimeConfig")


class RehearsalError(RuntimeError):
  """The template would not run on Vertex AI (or the rehearsal cannot run it); the message says why."""


@dataclasses.dataclass
class TaskResult:
  state: str                                     # ran | cached | resolved | imported | skipped
  outputs: Dict[str, List[Dict[str, Any]]]       # output key -> runtime artifacts
  parameters: Dict[str, Any] = dataclasses.field(default_factory=dict)  # output parameters
  log: str = ""


@dataclasses.dataclass
class Rehearsal:
  run_id: str
  tasks: Dict[str, TaskResult]
  not_rehearsed: List[str]


def load_template(path: str) -> Dict[str, Any]:
  try:
    # Read without blocking (a FIFO would wait for a writer) and bounded: compiled templates are ~100 kB.
    job = json.loads(tree.read_file(path, _TEMPLATE_LIMIT))
  except (OSError, ValueError) as e:
    raise RehearsalError(f"cannot read the template {path}: {e}") from e
  if not isinstance(job, dict) or "pipelineSpec" not in job:
    raise RehearsalError(f"{path} is not a Vertex AI PipelineJob (no pipelineSpec); compile it with --target vertex")
  for dotted in _MAPPINGS:
    node: Any = job
    for key in dotted.split("."):
      node = node.get(key, {} if dotted == "runtimeConfig" else None) if isinstance(node, dict) else None
    if not isinstance(node, dict):
      raise RehearsalError(f"{path} is not a PipelineJob as `colorize compile` writes it: {dotted} is not a mapping")
  return job


def runtime_parameters(job: Dict[str, Any], given: Dict[str, str]) -> Dict[str, Dict[str, Any]]:
  """The run's runtime parameters as Values: defaults of the template, then `given` (NAME -> text),
  each parsed as its declared type.
  """
  declared = {name: _declared_type(name, d)
              for name, d in job["pipelineSpec"]["root"].get("inputDefinitions", {}).get("parameters", {}).items()}
  unknown = sorted(set(given) - set(declared))
  if unknown:
    raise RehearsalError(f"the pipeline has no runtime parameter {unknown}; it declares {sorted(declared) or 'none'}")
  runtime = job.get("runtimeConfig", {})
  values = {}
  for name, ptype in declared.items():
    if name in given:
      values[name] = _parse_value(name, given[name], ptype)
    elif name in runtime.get("parameters", {}):
      values[name] = _check_value(f"runtime parameter {name}", runtime["parameters"][name], ptype)
    elif name in runtime.get("parameterValues", {}):
      values[name] = _parse_value(name, runtime["parameterValues"][name], ptype)
    else:
      raise RehearsalError(f"runtime parameter {name} has no default: give it with --param {name}=VALUE")
  return values


def plain_value(value: Dict[str, Any]) -> Any:
  """A runtime parameter's Value (as runtime_parameters gives it) as a Python int, float or str."""
  (field, held), = value.items()
  return int(held) if field == _VALUE_FIELD["INT"] else held


def rehearse(template_path: str, workdir: str, params: Optional[Dict[str, str]] = None,
             enable_cache: bool = True, echo: Callable[[str], None] = print) -> Rehearsal:
  """Runs every task of the template at `template_path` in dependency order; see the module doc."""
  job = load_template(template_path)
  spec = job["pipelineSpec"]
  values = runtime_parameters(job, params or {})
  _refuse_what_is_not_rehearsed(spec)
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, _STATE_FILE), "w") as lock:
    try:
      fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as e:
      raise RehearsalError(f"another rehearsal is running in {workdir}") from e
    return _Run(job, spec, values, workdir, enable_cache, echo).run()


class _Run:
  """One rehearsal: the state of one PipelineJob run."""

  def __init__(self, job, spec, values, workdir, enable_cache, echo):
    self.job, self.spec, self.values, self.workdir = job, spec, values, workdir
    self.enable_cache, self.echo = enable_cache, echo
    self.record_path = os.path.join(workdir, RECORD)
    self.record = _read_record(self.record_path)
    self.run_id = f"rehearsal-{len(self.record['runs']) + 1}-{time.strftime('%Y%m%d%H%M%S')}"
    self.record["runs"].append({"id": self.run_id, "parameters": values, "tasks": {}, "state": "running"})
    self.image_root = image_lib.stage(workdir)
    self.map_path = image_lib.path_mapper(self.image_root, os.path.join(workdir, "gcs"))
    root = job.get("runtimeConfig", {}).get("gcsOutputDirectory")
    if not root:
      raise RehearsalError("the template has no runtimeConfig.gcsOutputDirectory (the pipeline root)")
    self.run_root = os.path.join(self.map_path(root), self.run_id)
    self.hooks = os.path.join(workdir, "hooks")
    os.makedirs(self.hooks, exist_ok=True)
    with open(os.path.join(self.hooks, "sitecustomize.py"), "w") as f:
      f.write(_SITECUSTOMIZE.format(path=os.path.join(self.image_root, "cloud", "rehearsal", "vertex_training.py")))
    self.results: Dict[str, TaskResult] = {}

  def run(self) -> Rehearsal:
    tasks = self.spec["root"]["dag"]["tasks"]
    self.echo(f"rehearsal {self.run_id}: {len(tasks)} tasks, outputs under {self.run_root}")
    run = self.record["runs"][-1]
    try:
      for name in _in_dependency_order(tasks):
        self.results[name] = self._task(name, tasks[name])
        run["tasks"][name] = self.results[name].state
        self._echo_task(name, self.results[name])
      run["state"] = "succeeded"
    finally:
      run["state"] = run["state"] if run["state"] == "succeeded" else "failed"
      _write_record(self.record_path, self.record)
    notes = list(NOT_REHEARSED)
    self.echo("\n".join(notes))
    return Rehearsal(self.run_id, self.results, notes)

  def _echo_task(self, name: str, result: TaskResult) -> None:
    self.echo(f"  {name}: {result.state}")
    for key, artifacts in sorted(result.outputs.items()):
      for a in artifacts:
        self.echo(f"    {key}: {a['uri']}")
      if not artifacts:
        self.echo(f"    {key}: (none)")

  # --- one task ---

  def _task(self, name: str, task: Dict[str, Any]) -> TaskResult:
    for unsupported in ("iteratorPolicy", "parameterIterator", "artifactIterator"):
      if unsupported in task:
        raise RehearsalError(f"task {name}: {unsupported} is not rehearsed (the rehearsal runs plain DAGs)")
    trigger = task.get("triggerPolicy", {})
    if set(trigger) - {"condition"}:
      raise RehearsalError(f"task {name}: triggerPolicy {sorted(trigger)} is not rehearsed (only a condition)")
    component = self.spec["components"].get(task["componentRef"]["name"])
    if component is None:
      raise RehearsalError(f"task {name} refers to component {task['componentRef']['name']!r}, which the spec lacks")
    if "dag" in component:
      raise RehearsalError(f"task {name}: sub-DAGs are not rehearsed")
    executor = self.spec["deploymentSpec"]["executors"].get(component.get("executorLabel"))
    if executor is None:
      raise RehearsalError(f"task {name}: no executor {component.get('executorLabel')!r} in deploymentSpec")
    parameters = self._parameters(name, task, component)
    artifacts = self._input_artifacts(name, task)
    if "condition" in trigger and not _condition_holds(name, trigger["condition"], parameters, artifacts):
      # Vertex skips the task; what reads its outputs is skipped by the same condition.
      return TaskResult("skipped", {key: [] for key in component.get("outputDefinitions", {}).get("artifacts", {})})
    if "resolver" in executor:
      return self._resolve(name, component, executor["resolver"], artifacts)
    if "importer" in executor:
      return self._import(name, component, executor["importer"])
    if "container" in executor:
      return self._container(name, task, component, executor["container"], parameters, artifacts)
    raise RehearsalError(f"task {name}: executor kind {sorted(executor)} is not rehearsed")

  def _parameters(self, name, task, component) -> Dict[str, Dict[str, Any]]:
    declared = component.get("inputDefinitions", {}).get("parameters", {})
    given = task.get("inputs", {}).get("parameters", {})
    undeclared = sorted(set(given) - set(declared))
    if undeclared:
      raise RehearsalError(f"task {name} sets parameters its component does not declare: {undeclared}")
    values = {}
    for key, source in given.items():
      ptype = _declared_type(f"{name}.{key}", declared[key])
      if "runtimeValue" in source:
        value = _check_value(f"task {name} parameter {key}", source["runtimeValue"].get("constantValue", {}), ptype)
      elif "componentInputParameter" in source:
        value = self.values.get(source["componentInputParameter"])
        if value is None:
          raise RehearsalError(f"task {name} parameter {key} reads runtime parameter "
                               f"{source['componentInputParameter']!r}, which the pipeline does not declare")
        value = _check_value(f"task {name} parameter {key}", value, ptype)
      elif "taskOutputParameter" in source:
        ref = source["taskOutputParameter"]
        produced = self.results[ref["producerTask"]].parameters
        if ref["outputParameterKey"] not in produced:
          raise RehearsalError(f"task {name} parameter {key}: {ref['producerTask']} gave no "
                               f"{ref['outputParameterKey']!r}")
        value = _check_value(f"task {name} parameter {key}", produced[ref["outputParameterKey"]], ptype)
      else:
        raise RehearsalError(f"task {name} parameter {key}: source {sorted(source)} is not rehearsed")
      values[key] = value
    missing = sorted(k for k, d in declared.items() if k not in values and not d.get("isOptional"))
    if missing:
      raise RehearsalError(f"task {name} does not set the parameters its component needs: {missing}")
    return values

  def _input_artifacts(self, name, task) -> Dict[str, List[Dict[str, Any]]]:
    artifacts = {}
    for key, source in task.get("inputs", {}).get("artifacts", {}).items():
      ref = source.get("taskOutputArtifact")
      if ref is None:
        raise RehearsalError(f"task {name} input {key}: source {sorted(source)} is not rehearsed")
      produced = self.results[ref["producerTask"]].outputs
      if ref["outputArtifactKey"] not in produced:
        raise RehearsalError(f"task {name} input {key}: {ref['producerTask']} has no output "
                             f"{ref['outputArtifactKey']!r}")
      artifacts[key] = produced[ref["outputArtifactKey"]]
    return artifacts

  def _resolve(self, name, component, resolver, inputs) -> TaskResult:
    outputs = {}
    for key, query in resolver.get("outputArtifactQueries", {}).items():
      text = query.get("filter", "")
      try:
        text = _PLACEHOLDER.sub(lambda m: _input_placeholder(m.group(1), inputs), text)
      except _NothingToResolveError:
        outputs[key] = []
        continue
      terms = [_parse_term(name, t) for t in text.split(" AND ")]
      matches = [a for a in self.record["artifacts"] if all(_matches(a, field, value) for field, value in terms)]
      outputs[key] = [_runtime_artifact(matches[-1])] if matches else []
    return TaskResult("resolved", outputs)

  def _import(self, name, component, importer) -> TaskResult:
    source = importer.get("artifactUri", {})
    if "runtimeParameter" in source:
      uri = self.values[source["runtimeParameter"]]
    else:
      uri = source.get("constantValue", {})
    uri = next(iter(uri.values()), "") if isinstance(uri, dict) else uri
    (key, definition), = component["outputDefinitions"]["artifacts"].items()
    artifact = self._new_artifact(definition["artifactType"], self.map_path(uri), importer.get("metadata", {}))
    self._remember(name, artifact)
    return TaskResult("imported", {key: [artifact]})

  def _container(self, name, task, component, container, parameters, inputs) -> TaskResult:
    task_dir = os.path.join(self.run_root, name)
    os.makedirs(task_dir, exist_ok=True)
    outputs = {}
    for key, definition in component.get("outputDefinitions", {}).get("artifacts", {}).items():
      outputs[key] = [self._new_artifact(definition["artifactType"], os.path.join(task_dir, key), {})]
    output_parameters = {key: {"outputFile": os.path.join(task_dir, "parameters", key)}
                         for key in component.get("outputDefinitions", {}).get("parameters", {})}
    output_file = os.path.join(task_dir, "executor_output.json")
    parameters = {k: self._mapped_value(v) for k, v in parameters.items()}

    check = container.get("lifecycle", {}).get("preCacheCheck")
    if check:
      executor_input = _executor_input(parameters, inputs, outputs, output_parameters, output_file)
      self._subprocess(name, "pre-cache check", check["command"], check.get("args", []), executor_input, task_dir)
      answer = _read_output(output_file)
      for key, value in answer.get("parameterValues", {}).items():
        parameters[key] = _legacy_value(value)
      for key, listed in answer.get("artifacts", {}).items():
        for artifact, given in zip(outputs.get(key, []), listed.get("artifacts", []), strict=False):
          artifact["metadata"] = given.get("metadata", {})

    cache_key = _cache_key(component, container, parameters, inputs)
    cached = self.record["executions"].get(cache_key)
    if cached and self.enable_cache and task.get("cachingOptions", {}).get("enableCache"):
      return TaskResult("cached", cached["outputs"], cached.get("parameters", {}), cached.get("log", ""))

    executor_input = _executor_input(parameters, inputs, outputs, output_parameters, output_file)
    log = self._subprocess(name, "executor", container["command"], container.get("args", []), executor_input,
                           task_dir, image=container.get("image", ""))
    produced = _read_output(output_file) if os.path.exists(output_file) else {}
    for key, listed in produced.get("artifacts", {}).items():
      if key not in outputs:
        raise RehearsalError(f"task {name} wrote an output {key!r} its component does not declare")
      for artifact, given in zip(outputs[key], listed.get("artifacts", []), strict=False):
        artifact["metadata"] = given.get("metadata", {})
        artifact["uri"] = given.get("uri") or artifact["uri"]
    out_parameters = dict(produced.get("parameterValues", {}))
    for artifact_list in outputs.values():
      for artifact in artifact_list:
        self._remember(name, artifact)
    self.record["executions"][cache_key] = {"task": name, "run": self.run_id, "outputs": outputs,
                                            "parameters": out_parameters, "log": log}
    _write_record(self.record_path, self.record)
    return TaskResult("ran", outputs, out_parameters, log)

  def _mapped_value(self, value: Dict[str, Any]) -> Dict[str, Any]:
    if "stringValue" in value:
      return {"stringValue": self.map_path(value["stringValue"])}
    return value

  def _subprocess(self, name, what, command, args, executor_input, task_dir, image="") -> str:
    executor_json = json.dumps(executor_input)
    argv = [_expand(name, a, executor_input, executor_json) for a in list(command) + list(args)]
    argv = [self.map_path(a) for a in argv]
    # Beam steps run on the DirectRunner, inside the step's process.
    argv = ["--runner=DirectRunner" if a == "--runner=DataflowRunner" else a for a in argv]
    if argv and argv[0] in ("python", "python3"):
      argv[0] = sys.executable
    # No PYTHON* variable of this process either: PYTHONDONTWRITEBYTECODE would make every step compile
    # TensorFlow, TFX and Beam from source again (~4 CPU s a step, dozens of steps a rehearsal).
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(PYTHONPATH=self.hooks, COLORIZE_REHEARSAL_IMAGE=image,
               COLORIZE_REHEARSAL_TASK_DIR=task_dir)
    log = os.path.join(task_dir, f"{what.replace(' ', '-')}.log")
    with open(log, "w") as out:
      done = subprocess.run(argv, check=False, cwd=self.image_root, env=env, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0:
      with open(log, errors="replace") as f:
        lines = [line.strip() for line in f if line.strip()]
      last = lines[-1] if lines else "no output"
      raise RehearsalError(f"task {name}: the {what} failed (exit {done.returncode}): {last} (log: {log})")
    return log

  def _new_artifact(self, artifact_type, uri, metadata) -> Dict[str, Any]:
    self.record["next_id"] += 1
    return {"name": ARTIFACT_NAME.format(self.record["next_id"]), "type": artifact_type, "uri": uri,
            "metadata": dict(metadata)}

  def _remember(self, task: str, artifact: Dict[str, Any]) -> None:
    self.record["artifacts"].append({**artifact, "state": "LIVE", "task": task, "run": self.run_id})


def _refuse_what_is_not_rehearsed(spec: Dict[str, Any]) -> None:
  for name, task in spec["root"]["dag"]["tasks"].items():
    component = spec["components"].get(task["componentRef"]["name"], {})
    container = spec["deploymentSpec"]["executors"].get(component.get("executorLabel"), {}).get("container", {})
    args = container.get("args", [])
    if "--executor_class_path" in args[:-1]:
      class_path = args[args.index("--executor_class_path") + 1]
      for prefix, why in _NOT_REHEARSED_EXECUTORS.items():
        if class_path.startswith(prefix):
          raise RehearsalError(f"task {name} ({class_path}) {why}")


class _NothingToResolveError(Exception):
  """A query refers to an input that is empty (e.g. no blessed model yet): it finds nothing."""


# The conditions TFX's Kubeflow v2 compiler writes for tfx.dsl.Cond: comparisons of input artifacts'
# metadata and input parameters with literals, joined by && and ||, in parentheses.
_CONDITION_OPERAND = re.compile(r"inputs\.artifacts\['([^']+)'\]\.artifacts\[0\]\.metadata\['([^']+)'\]"
                                r"|inputs\.parameter_values\['([^']+)'\]")


def _condition_holds(task: str, condition: str, parameters, artifacts) -> bool:
  """Evaluates a task's triggerPolicy condition (CEL, in the subset the compiler writes)."""
  import ast

  def operand(m):
    if m.group(3):
      if m.group(3) not in parameters:
        raise RehearsalError(f"task {task}: its condition reads parameter {m.group(3)!r}, which it has not")
      return repr(parameters[m.group(3)])
    listed = artifacts.get(m.group(1)) or []
    if not listed:
      raise RehearsalError(f"task {task}: its condition reads input {m.group(1)!r}, which holds no artifact")
    return repr(listed[0]["metadata"].get(m.group(2)))

  text = _CONDITION_OPERAND.sub(operand, condition).replace("&&", " and ").replace("||", " or ")
  try:
    tree = ast.parse(text, mode="eval")
  except SyntaxError as e:
    raise RehearsalError(f"task {task}: condition {condition!r} is not rehearsed ({e.msg})") from e
  allowed = (ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.Compare, ast.Constant, ast.Eq, ast.NotEq, ast.Lt,
             ast.LtE, ast.Gt, ast.GtE, ast.UnaryOp, ast.Not, ast.USub)
  if not all(isinstance(node, allowed) for node in ast.walk(tree)):
    raise RehearsalError(f"task {task}: condition {condition!r} is not rehearsed")
  return bool(eval(compile(tree, "<condition>", "eval"), {"__builtins__": {}}))  # literals and comparisons only


def _input_placeholder(expression: str, inputs) -> str:
  m = re.fullmatch(r"\.inputs\.artifacts\['([^']+)'\]\.metadata\['([^']+)'\]", expression)
  if not m:
    raise RehearsalError(f"placeholder {{{{${expression}}}}} in a resolver query is not rehearsed")
  listed = inputs.get(m.group(1)) or []
  if not listed:
    raise _NothingToResolveError()
  value = listed[0]["metadata"].get(m.group(2))
  if value is None:
    raise RehearsalError(f"the query reads metadata {m.group(2)!r} of {m.group(1)!r}, which has none")
  return str(value)


def _parse_term(task: str, term: str):
  m = _FILTER_TERM.match(term)
  if not m:
    raise RehearsalError(f"task {task}: filter term {term!r} is not rehearsed (only FIELD=VALUE joined by AND)")
  field, value = m.group(1), m.group(2)
  if value.startswith('"'):
    value = json.loads(value)
  if field not in ("schema_title", "state", "name") and not re.fullmatch(
      r"metadata\.\w+\.(number_value|string_value)", field):
    raise RehearsalError(f"task {task}: filter field {field!r} is not rehearsed")
  return field, value


def _matches(artifact: Dict[str, Any], field: str, value: str) -> bool:
  if field == "schema_title":
    return _type_title(artifact["type"]) == value
  if field == "state":
    return artifact.get("state") == value
  if field == "name":
    return artifact["name"] == value
  _, key, kind = field.split(".")
  got = artifact["metadata"].get(key)
  if kind == "number_value":
    return isinstance(got, (int, float)) and not isinstance(got, bool) and got == float(value)
  return got == value


def _type_title(artifact_type: Dict[str, Any]) -> str:
  if "schemaTitle" in artifact_type:
    return artifact_type["schemaTitle"]
  return (yaml.safe_load(artifact_type.get("instanceSchema", "")) or {}).get("title", "")


def _runtime_artifact(stored: Dict[str, Any]) -> Dict[str, Any]:
  return {k: stored[k] for k in ("name", "type", "uri", "metadata")}


def _executor_input(parameters, inputs, outputs, output_parameters, output_file) -> Dict[str, Any]:
  return {
      "inputs": {"parameters": parameters,
                 "artifacts": {k: {"artifacts": [_runtime_artifact(a) for a in v]} for k, v in inputs.items()}},
      "outputs": {"artifacts": {k: {"artifacts": [_runtime_artifact(a) for a in v]} for k, v in outputs.items()},
                  "parameters": output_parameters, "outputFile": output_file},
  }


def _expand(task: str, arg: str, executor_input: Dict[str, Any], executor_json: str) -> str:
  def one(m):
    expression = m.group(1)
    if expression == "":
      return executor_json
    if expression == ".outputs.output_file":
      return executor_input["outputs"]["outputFile"]
    p = re.fullmatch(r"\.inputs\.parameters\['([^']+)'\]", expression)
    if p and p.group(1) in executor_input["inputs"]["parameters"]:
      return str(next(iter(executor_input["inputs"]["parameters"][p.group(1)].values())))
    a = re.fullmatch(r"\.(inputs|outputs)\.artifacts\['([^']+)'\]\.uri", expression)
    if a and executor_input[a.group(1)]["artifacts"].get(a.group(2), {}).get("artifacts"):
      return executor_input[a.group(1)]["artifacts"][a.group(2)]["artifacts"][0]["uri"]
    o = re.fullmatch(r"\.outputs\.parameters\['([^']+)'\]\.output_file", expression)
    if o and o.group(1) in executor_input["outputs"]["parameters"]:
      return executor_input["outputs"]["parameters"][o.group(1)]["outputFile"]
    raise RehearsalError(f"task {task}: placeholder {m.group(0)} names nothing the task has")
  return _PLACEHOLDER.sub(one, arg)


def _declared_type(where: str, definition: Dict[str, Any]) -> str:
  try:
    return vertex_jobs.parameter_type(where, definition)
  except ConfigError as e:
    raise RehearsalError(str(e)) from e


def _parse_value(name: str, text: Any, ptype: str) -> Dict[str, Any]:
  try:
    value = vertex_jobs.typed_value(name, text, ptype)
  except ConfigError as e:
    raise RehearsalError(str(e)) from e
  return {_VALUE_FIELD[ptype]: str(value) if ptype == "INT" else value}


def _check_value(where: str, value: Dict[str, Any], ptype: str) -> Dict[str, Any]:
  field = _VALUE_FIELD[ptype]
  if set(value) != {field}:
    raise RehearsalError(f"{where} is declared {ptype} but given {value}")
  if ptype == "INT":
    try:
      int(value[field])
    except (TypeError, ValueError) as e:
      raise RehearsalError(f"{where} is declared INT but given {value}") from e
  return value


def _legacy_value(value: Any) -> Dict[str, Any]:
  """A google.protobuf.Value (what a pre-cache check answers) as the Value a TFX step reads."""
  if isinstance(value, bool):
    return {"intValue": str(int(value))}
  if isinstance(value, (int, float)):
    return {"intValue": str(int(value))} if float(value).is_integer() else {"doubleValue": value}
  return {"stringValue": str(value)}


def _cache_key(component, container, parameters, inputs) -> str:
  body = {"component": component, "container": {k: v for k, v in container.items() if k != "lifecycle"},
          "parameters": parameters, "inputs": {k: [a["name"] for a in v] for k, v in inputs.items()}}
  return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _read_output(path: str) -> Dict[str, Any]:
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError) as e:
    raise RehearsalError(f"cannot read the executor output {path}: {e}") from e


def _read_record(path: str) -> Dict[str, Any]:
  if not os.path.exists(path):
    return {"artifacts": [], "executions": {}, "runs": [], "next_id": 0}
  try:
    with open(path) as f:
      return json.load(f)
  except ValueError as e:
    raise RehearsalError(f"{path} is damaged ({e}); use a new --workdir") from e


def _write_record(path: str, record: Dict[str, Any]) -> None:
  tmp = f"{path}.tmp-{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(record, f, indent=1, sort_keys=True)
  os.replace(tmp, path)


def _in_dependency_order(tasks: Dict[str, Any]) -> List[str]:
  """Task names, each after the tasks it depends on (declared or through its inputs)."""
  def upstream(task):
    deps = set(task.get("dependentTasks", []))
    inputs = task.get("inputs", {})
    for source in list(inputs.get("artifacts", {}).values()) + list(inputs.get("parameters", {}).values()):
      for ref in ("taskOutputArtifact", "taskOutputParameter"):
        if ref in source:
          deps.add(source[ref]["producerTask"])
    return deps

  order, done, visiting = [], set(), set()

  def visit(name):
    if name in done:
      return
    if name in visiting:
      raise RehearsalError(f"the DAG has a cycle through {name}")
    if name not in tasks:
      raise RehearsalError(f"a task depends on {name!r}, which the DAG lacks")
    visiting.add(name)
    for dep in sorted(upstream(tasks[name])):
      visit(dep)
    visiting.discard(name)
    done.add(name)
    order.append(name)

  for name in sorted(tasks):
    visit(name)
  return order
