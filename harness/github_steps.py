"""The generated GitHub workflow (.github/workflows/ci.yml) run job by job, step by step: this is not GitHub's
own runner.

No Actions runner can be had on these machines (`act` is not in Debian, its npm and PyPI wrappers download a
binary; shared/ENVIRONMENT.md), so this module does what the runner does for the subset of the workflow syntax
the generated workflow uses, and refuses the rest in one line (`Unsupported`):

- `Workflow`: the file parsed with PyYAML (its `on:` key is YAML 1.1's `true`), the triggers (`on:` with branch
  filters), the jobs in the order `needs:` gives, and `plan(event)`: which jobs a run of event holds, with their
  `environment` and `concurrency` evaluated, every job assumed to succeed. No engine.
- `evaluate(expr, contexts)`, `interpolate(text, contexts)`: GitHub's expression language for what the workflow
  uses: literals, contexts (github, env, steps, needs, secrets, inputs, vars, job, runner), `.` and `[]`, `!`,
  `< <= > >= == !=`, `&&`, `||`, parentheses, and the functions success(), always(), failure(), cancelled(),
  format(), contains(), startsWith(), endsWith(), join(), toJSON(), fromJSON(). The semantics are the
  "Expressions" reference's (https://docs.github.com/actions/learn-github-actions/expressions): falsy values
  are false, 0, -0, "", null (and NaN); `==` is loose (different types are compared as numbers: null 0, true 1,
  false 0, a string parsed as a JSON number, "" 0, otherwise NaN) and ignores case between strings; `&&` and
  `||` return an operand, not a boolean (`a && 'x' || 'y'` is 'x' or 'y'); a missing property is null; an `if:`
  without a status function is `success() && (...)`.
- `StepRunner` / `WorkflowRun`: a run of the workflow for an event. Each job runs in a fresh container of the
  docker CLI stand-in (kit/jobs/docker: `docker:<_docker_version>`'s CLI and Compose on Debian, with bash, git
  and openssh-client, which GitHub's ubuntu images have too) on the test's network, with the runner engine's
  socket at /var/run/docker.sock: GitHub's ubuntu runners run Docker on the runner host itself and jobs talk to
  it through that socket. The checkout is at GITHUB_WORKSPACE=/home/runner/work/<repo>/<repo> and RUNNER_TEMP
  at /home/runner/work/_temp, as on a hosted runner; the GITHUB_* and RUNNER_* variables are set as GitHub sets
  them; GITHUB_OUTPUT, GITHUB_ENV and GITHUB_PATH are honoured between steps; step outputs, job outputs and
  `needs` work as in Actions. Each `run:` is written as it stands to a script in RUNNER_TEMP and run with the
  shell GitHub uses: `bash -e {0}` when no shell is given (the workflow gives none), `bash --noprofile --norc
  -eo pipefail {0}` for `shell: bash` ("Workflow syntax", jobs.<job_id>.steps[*].shell; github/docs#23853 and
  #27583 corrected the page: pipefail only with an explicit `shell: bash`).
- Substitutions (`substitutions()`, listed in the run's image-mode report): `actions/checkout@SHA` is done by
  this runner (a git fetch of the commit from the test's bare repository into the workspace, the branch
  checked out as actions/checkout does for a push, origin set to the GitHub URL; persist-credentials: false,
  so no credential is stored, as the workflow asks); `actions/setup-python@SHA` is the python stand-in image
  (kit/jobs/python: Debian's Python, not the pinned version) as the job's container; the job runs as root
  (GitHub's `runner` user is in the docker group: the same access to the engine); GITHUB_TOKEN is the test
  registry's password and GITHUB_ACTOR its user, the registry answering as ghcr.io; secret values are masked
  (`***`) in the recorded output as GitHub masks them in logs; `::error::` lines are kept as annotations.
"""

import json
import math
import re
import shlex
import time
import uuid
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

import yaml

from harness import reaper
from harness.docker import docker, network_hosts, unique
from harness.names import names
from harness.proc import DEVNULL, TimeoutExpired, run

WORK = "/home/runner/work"  # a hosted runner's work folder
HOME = "/home/runner"
SHELLS = {None: "bash -e {0}", "bash": "bash --noprofile --norc -eo pipefail {0}", "sh": "sh -e {0}"}
# The GitHub-rendered project of the pipeline tier (tests/pipeline/test_github.py): its own repository name, so its
# images (ghcr.io/my-group/lhd-app-gh/...) do not share the GitLab project's repositories in the session's one
# registry. Not its own owner: repo_owner is shard.yml's author, a compile input, and a compile of its own would cost
# the GitHub part a whole release build that the e2e tier's holds already (Runner.seed_compile; the render tier's
# tests/render/test_release_compile.py keeps the release-building projects on one compile).
GITHUB_ANSWERS = {"git_host": "github", "repo_name": "lhd-app-gh"}
GITHUB_NAMES = names(**GITHUB_ANSWERS)
STATUS_FUNCTIONS = ("success(", "always(", "failure(", "cancelled(")


class Unsupported(RuntimeError):
    """Workflow syntax this runner does not implement (one line naming it)."""


class ExpressionError(ValueError):
    pass


# -- expressions --------------------------------------------------------------------------------------------
TOKEN = re.compile(r"""\s*(?:
    (?P<number>0x[0-9a-fA-F]+|-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
  | (?P<string>'(?:[^']|'')*')
  | (?P<op>==|!=|<=|>=|&&|\|\||[!<>()\[\].,*])
  | (?P<name>[A-Za-z_][A-Za-z0-9_-]*)
)""", re.VERBOSE)


def tokenize(text):
    tokens, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ExpressionError(f"cannot read the expression at {text[pos:]!r}: {text!r}")
        pos = m.end()
        kind = m.lastgroup
        tokens.append((kind, m.group(kind)))
    return tokens


class Parser:
    """Recursive descent by GitHub's precedence: () [] . , then !, then < <= > >=, then == !=, then &&, then ||."""

    def __init__(self, text):
        self.text = text
        self.tokens = tokenize(text)
        self.pos = 0

    def peek(self):
        return self.tokens[self.pos] if self.pos < len(self.tokens) else (None, None)

    def take(self, value=None):
        token = self.peek()
        if token[0] is None or (value is not None and token[1] != value):
            raise ExpressionError(f"expected {value or 'more'} in {self.text!r}")
        self.pos += 1
        return token

    def parse(self):
        node = self.parse_or()
        if self.pos != len(self.tokens):
            raise ExpressionError(f"unexpected {self.peek()[1]!r} in {self.text!r}")
        return node

    def parse_or(self):
        node = self.parse_and()
        while self.peek() == ("op", "||"):
            self.take()
            node = ("or", node, self.parse_and())
        return node

    def parse_and(self):
        node = self.parse_eq()
        while self.peek() == ("op", "&&"):
            self.take()
            node = ("and", node, self.parse_eq())
        return node

    def parse_eq(self):
        node = self.parse_cmp()
        while self.peek() in (("op", "=="), ("op", "!=")):
            op = self.take()[1]
            node = (op, node, self.parse_cmp())
        return node

    def parse_cmp(self):
        node = self.parse_not()
        while self.peek() in (("op", "<"), ("op", "<="), ("op", ">"), ("op", ">=")):
            op = self.take()[1]
            node = (op, node, self.parse_not())
        return node

    def parse_not(self):
        if self.peek() == ("op", "!"):
            self.take()
            return ("not", self.parse_not())
        return self.parse_postfix()

    def parse_postfix(self):
        node = self.parse_primary()
        while True:
            token = self.peek()
            if token == ("op", "."):
                self.take()
                kind, name = self.take()
                if kind == "op" and name == "*":
                    node = ("star", node)
                elif kind == "name":
                    node = ("get", node, ("lit", name))
                else:
                    raise ExpressionError(f"expected a property name after '.' in {self.text!r}")
            elif token == ("op", "["):
                self.take()
                if self.peek() == ("op", "*"):
                    self.take()
                    node = ("star", node)
                else:
                    node = ("get", node, self.parse_or())
                self.take("]")
            else:
                return node

    def parse_primary(self):
        kind, value = self.take()
        if kind == "number":
            return ("lit", int(value, 16) if value.lower().startswith("0x") else float(value))
        if kind == "string":
            return ("lit", value[1:-1].replace("''", "'"))
        if kind == "op" and value == "(":
            node = self.parse_or()
            self.take(")")
            return node
        if kind == "name":
            if value in ("true", "false"):
                return ("lit", value == "true")
            if value == "null":
                return ("lit", None)
            if self.peek() == ("op", "("):
                self.take()
                args = []
                while self.peek() != ("op", ")"):
                    args.append(self.parse_or())
                    if self.peek() == ("op", ","):
                        self.take()
                self.take(")")
                return ("call", value, args)
            return ("context", value)
        raise ExpressionError(f"unexpected {value!r} in {self.text!r}")


def lookup(mapping, key):
    """mapping[key], case-insensitively for objects (GitHub's contexts are); null when missing."""
    if isinstance(mapping, dict):
        if key in mapping:
            return mapping[key]
        if isinstance(key, str):
            for k, v in mapping.items():
                if isinstance(k, str) and k.lower() == key.lower():
                    return v
        return None
    if isinstance(mapping, list) and isinstance(key, (int, float)) and not isinstance(key, bool):
        index = int(key)
        return mapping[index] if 0 <= index < len(mapping) and index == key else None
    return None


def truthy(value):
    if value is None or value is False or value == "":
        return False
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return not (value == 0 or math.isnan(value))
    return True


def to_number(value):
    """GitHub's coercion to a number for comparisons of different types."""
    if value is None:
        return 0.0
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if text == "":
            return 0.0
        try:
            return float(int(text, 16)) if text.lower().startswith("0x") else float(json.loads(text))
        except (ValueError, TypeError):
            return math.nan
    return math.nan


def kind_of(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "object"


def equal(a, b):
    ka, kb = kind_of(a), kind_of(b)
    if ka == kb:
        if ka == "string":
            return a.casefold() == b.casefold()
        if ka == "number":
            return float(a) == float(b)
        if ka == "object":
            return a is b
        return a == b
    if "object" in (ka, kb):
        return False
    return to_number(a) == to_number(b)


def compare(op, a, b):
    if kind_of(a) == kind_of(b) == "string":
        x, y = a.casefold(), b.casefold()
    else:
        x, y = to_number(a), to_number(b)
        if math.isnan(x) or math.isnan(y):
            return False
    return {"<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[op]


def to_string(value):
    """How a value is written into a string (an env value, a `run:` or `format()`)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2)


def github_format(template, *args):
    """format('{0} {1}', a, b), with {{ and }} for literal braces."""
    out, i = [], 0
    while i < len(template):
        c = template[i]
        if c == "{" and template.startswith("{{", i):
            out.append("{")
            i += 2
        elif c == "}" and template.startswith("}}", i):
            out.append("}")
            i += 2
        elif c == "{":
            end = template.find("}", i)
            index = template[i + 1:end] if end > 0 else ""
            if not index.isdigit() or int(index) >= len(args):
                raise ExpressionError(f"format(): bad placeholder in {template!r}")
            out.append(to_string(args[int(index)]))
            i = end + 1
        elif c == "}":
            raise ExpressionError(f"format(): unmatched '}}' in {template!r}")
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _contains(haystack, needle):
    if isinstance(haystack, list):
        return any(equal(item, needle) for item in haystack)
    return to_string(needle).casefold() in to_string(haystack).casefold()


FUNCTIONS = {
    "format": lambda template, *args: github_format(to_string(template), *args),
    "contains": _contains,
    "startswith": lambda s, p: to_string(s).casefold().startswith(to_string(p).casefold()),
    "endswith": lambda s, p: to_string(s).casefold().endswith(to_string(p).casefold()),
    "join": lambda items, sep=",": to_string(sep).join(to_string(i) for i in items) if isinstance(items, list)
    else to_string(items),
    "tojson": lambda value: json.dumps(value, indent=2),
    "fromjson": lambda text: json.loads(to_string(text)),
}


@dataclass
class Status:
    """What the status functions see: whether everything before (steps of the job, or the jobs it needs)
    succeeded, and whether something failed."""
    succeeded: bool = True
    failed: bool = False
    cancelled: bool = False


def evaluate(expression, contexts, status=None):
    """The value of a GitHub expression (without ${{ }}) in contexts (name -> value)."""
    status = status or Status()
    return _eval(Parser(expression).parse(), contexts, status)


def _eval(node, contexts, status):
    op = node[0]
    if op == "lit":
        return node[1]
    if op == "context":
        name = node[1].lower()
        if name not in {k.lower() for k in contexts}:
            raise ExpressionError(f"unknown context '{node[1]}' (this runner knows {', '.join(sorted(contexts))})")
        return lookup(contexts, node[1])
    if op == "get":
        return lookup(_eval(node[1], contexts, status), _eval(node[2], contexts, status))
    if op == "star":
        base = _eval(node[1], contexts, status)
        return list(base.values()) if isinstance(base, dict) else list(base) if isinstance(base, list) else []
    if op == "not":
        return not truthy(_eval(node[1], contexts, status))
    if op == "and":
        left = _eval(node[1], contexts, status)
        return _eval(node[2], contexts, status) if truthy(left) else left
    if op == "or":
        left = _eval(node[1], contexts, status)
        return left if truthy(left) else _eval(node[2], contexts, status)
    if op == "==":
        return equal(_eval(node[1], contexts, status), _eval(node[2], contexts, status))
    if op == "!=":
        return not equal(_eval(node[1], contexts, status), _eval(node[2], contexts, status))
    if op in ("<", "<=", ">", ">="):
        return compare(op, _eval(node[1], contexts, status), _eval(node[2], contexts, status))
    if op == "call":
        name = node[1].lower()
        if name == "success":
            return status.succeeded and not status.cancelled
        if name == "always":
            return True
        if name == "failure":
            return status.failed
        if name == "cancelled":
            return status.cancelled
        if name not in FUNCTIONS:
            raise Unsupported(f"the function {node[1]}() is not supported by this runner")
        return FUNCTIONS[name](*[_eval(arg, contexts, status) for arg in node[2]])
    raise ExpressionError(f"cannot evaluate {node!r}")


EMBEDDED = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)


def interpolate(value, contexts, status=None):
    """A workflow value with each ${{ expr }} replaced by its string (non-strings are returned as they are)."""
    if not isinstance(value, str):
        return value
    return EMBEDDED.sub(lambda m: to_string(evaluate(m.group(1), contexts, status)), value)


def condition(text, contexts, status):
    """An `if:` (with or without ${{ }}): true or false. Without a status function it is success() && (...)."""
    if text is None:
        text = "success()"
    if isinstance(text, bool):
        text = "true" if text else "false"
    text = str(text).strip()
    whole = EMBEDDED.fullmatch(text)
    if whole:
        text = whole.group(1).strip()
    elif "${{" in text:
        # text with an embedded expression: GitHub evaluates the string, which is truthy unless empty
        return truthy(interpolate(text, contexts, status))
    if not any(f in text.replace(" ", "").lower() for f in STATUS_FUNCTIONS):
        text = f"success() && ({text})"
    return truthy(evaluate(text, contexts, status))


# -- the workflow -------------------------------------------------------------------------------------------
@dataclass
class Event:
    """What triggered a run, as the github context and the GITHUB_* variables carry it."""
    name: str  # push | pull_request | workflow_dispatch
    ref: str  # refs/heads/main, refs/pull/7/merge
    sha: str
    actor: str = "octocat"
    base_ref: str = ""
    head_ref: str = ""
    inputs: dict = field(default_factory=dict)
    number: int = 0

    @classmethod
    def push(cls, branch, sha, actor="octocat"):
        return cls("push", f"refs/heads/{branch}", sha, actor)

    @classmethod
    def pull_request(cls, head, base, sha, number=7, actor="octocat"):
        return cls("pull_request", f"refs/pull/{number}/merge", sha, actor, base_ref=base, head_ref=head,
                   number=number)

    @classmethod
    def dispatch(cls, branch, sha, actor="octocat", **inputs):
        return cls("workflow_dispatch", f"refs/heads/{branch}", sha, actor, inputs=inputs)

    @property
    def ref_name(self):
        return self.ref.split("/", 2)[2] if self.ref.startswith(("refs/heads/", "refs/tags/", "refs/pull/")) \
            else self.ref

    @property
    def branch(self):
        """The branch the on: filters match: the pushed one, or a pull request's base."""
        return self.base_ref if self.name == "pull_request" else self.ref_name


@dataclass
class JobPlan:
    runs: bool
    environment: dict | None = None  # {"name": ..., "url": ...}
    concurrency: dict | None = None  # {"group": ..., "cancel-in-progress": ...}


class Workflow:
    def __init__(self, path, repository="my-group/lhd-app"):
        self.path = Path(path)
        self.doc = yaml.safe_load(self.path.read_text())
        # YAML 1.1 reads the key `on` as the boolean true
        self.on = self.doc.get("on", self.doc.get(True)) or {}
        if isinstance(self.on, (str, list)):
            self.on = {name: None for name in ([self.on] if isinstance(self.on, str) else self.on)}
        self.env = {k: str(v) for k, v in (self.doc.get("env") or {}).items()}
        self.jobs = self.doc["jobs"]
        self.name = self.doc.get("name", self.path.name)
        self.repository = repository
        self.defaults = self.doc.get("defaults") or {}

    def triggered_by(self, event):
        """Whether event starts a run: its event is in `on:` and the branch passes its branches filters."""
        if event.name not in self.on:
            return False
        spec = self.on[event.name] or {}
        branches, ignored = spec.get("branches"), spec.get("branches-ignore")
        if branches is not None:
            return any(fnmatchcase(event.branch, pattern) for pattern in branches)
        if ignored is not None:
            return not any(fnmatchcase(event.branch, pattern) for pattern in ignored)
        return True

    def needs(self, job):
        needs = self.jobs[job].get("needs") or []
        return [needs] if isinstance(needs, str) else list(needs)

    def order(self):
        """The jobs in an order `needs:` allows (file order among ready ones), as the runner starts them."""
        done, order = set(), []
        while len(order) < len(self.jobs):
            ready = [j for j in self.jobs if j not in done and set(self.needs(j)) <= done]
            if not ready:
                raise Unsupported(f"the jobs' needs form a cycle: {sorted(set(self.jobs) - done)}")
            done.add(ready[0])
            order.append(ready[0])
        return order

    def inputs(self, event):
        """The inputs context: a workflow_dispatch's inputs with their types and defaults (null otherwise)."""
        if event.name != "workflow_dispatch":
            return {}
        declared = ((self.on.get("workflow_dispatch") or {}).get("inputs")) or {}
        values = {}
        for name, spec in declared.items():
            value = event.inputs.get(name, spec.get("default"))
            if spec.get("type") == "boolean" and isinstance(value, str):
                value = value.lower() == "true"
            values[name] = value
        return values

    def github_context(self, event, job=None):
        owner, repo = self.repository.split("/")
        workspace = f"{WORK}/{repo}/{repo}"  # a hosted runner's checkout folder, as Job.workspace
        payload = {"inputs": self.inputs(event)} if event.name == "workflow_dispatch" else {}
        if event.name == "pull_request":
            payload = {"number": event.number, "pull_request": {"number": event.number,
                                                                "base": {"ref": event.base_ref},
                                                                "head": {"ref": event.head_ref, "sha": event.sha}}}
        return {"event_name": event.name, "ref": event.ref, "ref_name": event.ref_name,
                "ref_type": "branch", "sha": event.sha, "base_ref": event.base_ref, "head_ref": event.head_ref,
                "actor": event.actor, "triggering_actor": event.actor, "repository": self.repository,
                "repository_owner": owner, "workflow": self.name, "job": job, "run_id": "1", "run_number": "1",
                "run_attempt": "1", "server_url": "https://github.com", "api_url": "https://api.github.com",
                "workspace": workspace, "event": payload}

    def contexts(self, event, job, needs, secrets=None, vars=None, env=None):
        return {"github": self.github_context(event, job), "needs": needs, "inputs": self.inputs(event),
                "vars": vars or {}, "secrets": secrets or {}, "env": env if env is not None else dict(self.env),
                "steps": {}, "job": {"status": "success"}, "runner": {"os": "Linux", "arch": "X64",
                                                                    "temp": f"{WORK}/_temp"},
                "strategy": {}, "matrix": {}}

    def job_env(self, job, contexts):
        """The workflow's env and the job's, interpolated (the workflow's first: the job's may use it)."""
        env = {key: to_string(interpolate(value, {**contexts, "env": {}})) for key, value in self.env.items()}
        for key, value in (self.jobs[job].get("env") or {}).items():
            env[key] = to_string(interpolate(value, {**contexts, "env": env}))
        return env

    def environment(self, job, contexts):
        spec = self.jobs[job].get("environment")
        if spec is None:
            return None
        if isinstance(spec, str):
            spec = {"name": spec}
        return {key: to_string(interpolate(value, contexts)) for key, value in spec.items()}

    def concurrency(self, job, contexts):
        spec = self.jobs[job].get("concurrency")
        if spec is None:
            return None
        if isinstance(spec, str):
            spec = {"group": spec}
        out = {"group": to_string(interpolate(spec["group"], contexts))}
        cancel = spec.get("cancel-in-progress", False)
        out["cancel-in-progress"] = condition(cancel, contexts, Status()) if isinstance(cancel, str) else bool(cancel)
        return out

    def job_if(self, job, contexts, results):
        """A job's `if:`: the status functions see whether every job it needs succeeded."""
        needed = [results.get(n, "skipped") for n in self.needs(job)]
        status = Status(succeeded=all(r == "success" for r in needed), failed=any(r == "failure" for r in needed),
                        cancelled=any(r == "cancelled" for r in needed))
        return condition(self.jobs[job].get("if"), contexts, status)

    def plan(self, event, secrets=None, vars=None):
        """job -> JobPlan for a run of event, every job that runs assumed to succeed (outputs unknown: null)."""
        if not self.triggered_by(event):
            return {job: JobPlan(False) for job in self.jobs}
        plans, results = {}, {}
        for job in self.order():
            needs = {n: {"result": results[n], "outputs": {}} for n in self.needs(job)}
            contexts = self.contexts(event, job, needs, secrets, vars, env={})
            runs = self.job_if(job, contexts, results)
            results[job] = "success" if runs else "skipped"
            contexts["env"] = self.job_env(job, contexts)
            plans[job] = JobPlan(runs, self.environment(job, contexts) if runs else None,
                                 self.concurrency(job, contexts) if runs else None)
        return plans


# -- running it ---------------------------------------------------------------------------------------------
def parse_file_commands(text):
    """A GITHUB_OUTPUT / GITHUB_ENV file: NAME=VALUE lines and NAME<<DELIMITER ... DELIMITER blocks."""
    values, lines, i = {}, text.splitlines(), 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            body, i = [], i + 1
            while i < len(lines) and lines[i] != delimiter:
                body.append(lines[i])
                i += 1
            if i >= len(lines):
                raise Unsupported(f"the file command for {name} has no closing delimiter {delimiter}")
            values[name] = "\n".join(body)
        elif "=" in line:
            name, value = line.split("=", 1)
            values[name] = value
        elif line.strip():
            raise Unsupported(f"cannot read the file command line {line!r}")
        i += 1
    return values


@dataclass
class StepResult:
    name: str
    outcome: str  # success | failure | skipped
    output: str = ""
    seconds: float = 0.0
    outputs: dict = field(default_factory=dict)


@dataclass
class JobResult:
    job: str
    result: str  # success | failure | skipped
    steps: list = field(default_factory=list)
    outputs: dict = field(default_factory=dict)
    seconds: float = 0.0
    environment: dict | None = None
    concurrency: dict | None = None
    annotations: list = field(default_factory=list)  # the ::error:: / ::warning:: lines, as printed

    @property
    def output(self):
        return "\n".join(f"## {s.name} ({s.outcome})\n{s.output}" for s in self.steps)

    def step(self, name):
        return next(s for s in self.steps if s.name == name)


class StepRunner:
    """Runs the workflow's jobs against real parts: the job containers on `network`, talking to the engine whose
    unix socket is `socket` (a host path), the checkout fetched from `clone_url` (a path or URL on the host)."""

    def __init__(self, workflow, workdir, network, socket, clone_url, job_image, python_image, secrets=None,
                 environments=None, vars=None, labels=None, volumes=()):
        """secrets: the repository's secrets (GITHUB_TOKEN among them); environments: name -> that environment's
        secrets, given to a job whose `environment:` is that name, over the repository's; volumes: host paths
        mounted read-only at the same path in every job (the template the project's .cruft.json names)."""
        self.workflow = workflow
        self.workdir = Path(workdir)
        self.network = network
        self.socket = socket
        self.clone_url = str(clone_url)
        self.job_image = job_image
        self.python_image = python_image
        self.secrets = dict(secrets or {})
        self.environments = {k: dict(v) for k, v in (environments or {}).items()}
        self.vars = dict(vars or {})
        self.labels = labels or reaper.label_args()
        self.volumes = [arg for path in volumes for arg in ("-v", f"{path}:{path}:ro")]
        self.runs = []  # (job, seconds, result) of every job run, in order, for the report
        self.containers = []  # every job container's name (leftovers)

    def start(self, event):
        if not self.workflow.triggered_by(event):
            raise Unsupported(f"{event.name} of {event.branch} does not trigger {self.workflow.name}")
        return WorkflowRun(self, event, len(self.runs))

    def leftovers(self):
        names = [c for c in self.containers if docker("ps", "-a", "-q", "--filter", f"name=^{c}$").stdout.strip()]
        return {"containers": names} if names else {}


class WorkflowRun:
    """One run of the workflow for an event: `run_job` runs one job (its needs must have run), `run_all` the rest
    in order; `rerun(job, ...)` runs a job again with the same needs (GitHub's "Re-run job")."""

    def __init__(self, runner, event, number):
        self.runner = runner
        self.workflow = runner.workflow
        self.event = event
        self.results = {}  # job -> JobResult
        self.attempt = 1  # GITHUB_RUN_ATTEMPT: a re-run is the run's next attempt
        self.dir = runner.workdir / f"run-{number}-{uuid.uuid4().hex[:6]}"

    def needs_context(self, job):
        missing = [n for n in self.workflow.needs(job) if n not in self.results]
        if missing:
            raise Unsupported(f"{job} needs {', '.join(missing)}, which have not run in this run")
        return {n: {"result": self.results[n].result, "outputs": self.results[n].outputs}
                for n in self.workflow.needs(job)}

    def run_all(self, timeout=3600):
        for job in self.workflow.order():
            if job not in self.results:
                self.run_job(job, timeout=timeout)
        return self

    def conclusion(self):
        """The run's conclusion: failure if a job failed (continue-on-error jobs do not count)."""
        failed = [j for j, r in self.results.items()
                  if r.result == "failure" and not self.workflow.jobs[j].get("continue-on-error")]
        return "failure" if failed else "success"

    def rerun(self, job, secrets=None, environments=None, timeout=3600):
        """The job again, its needs' results and outputs as they were (GitHub's "Re-run job" keeps them), with
        the runner's secrets or an environment's replaced for this run."""
        saved = self.runner.secrets, self.runner.environments
        if secrets is not None:
            self.runner.secrets = secrets
        if environments is not None:
            self.runner.environments = environments
        try:
            self.results.pop(job, None)
            self.attempt += 1
            return self.run_job(job, timeout=timeout)
        finally:
            self.runner.secrets, self.runner.environments = saved

    def run_job(self, job, timeout=3600):
        spec = self.workflow.jobs[job]
        for key in ("container", "services", "strategy", "uses"):
            if key in spec:
                raise Unsupported(f"job {job}: `{key}:` is not supported by this runner")
        needs = self.needs_context(job)
        started = time.perf_counter()
        results = {n: r.result for n, r in self.results.items()}
        base = self.workflow.contexts(self.event, job, needs, self.runner.secrets, self.runner.vars, env={})
        if not self.workflow.job_if(job, base, results):
            self.results[job] = JobResult(job, "skipped")
            self.runner.runs.append((job, 0.0, "skipped"))
            return self.results[job]
        contexts = self.workflow.contexts(self.event, job, needs, None, self.runner.vars)
        contexts["github"]["run_attempt"] = str(self.attempt)
        contexts["env"] = self.workflow.job_env(job, contexts)
        environment = self.workflow.environment(job, contexts)
        concurrency = self.workflow.concurrency(job, contexts)
        secrets = {**self.runner.secrets, **self.runner.environments.get((environment or {}).get("name"), {})}
        contexts["secrets"] = secrets
        result = JobResult(job, "success", environment=environment, concurrency=concurrency)
        self.results[job] = result
        try:
            JobContainer(self, job, contexts, result, timeout).run(spec.get("steps") or [])
        finally:
            result.seconds = time.perf_counter() - started
            self.runner.runs.append((job, result.seconds, result.result))
        return result


class JobContainer:
    """One job: its container, its workspace and temp folder, its steps."""

    def __init__(self, run_, job, contexts, result, timeout):
        self.run_ = run_
        self.runner = run_.runner
        self.workflow = run_.workflow
        self.event = run_.event
        self.job = job
        self.contexts = contexts
        self.result = result
        self.deadline = time.monotonic() + timeout
        self.repo = self.workflow.repository.split("/")[1]
        self.workspace = f"{WORK}/{self.repo}/{self.repo}"
        # a fresh folder per attempt, as a re-run gets a fresh runner
        self.host_work = run_.dir / f"{job}-{run_.attempt}" / "work"
        self.extra_env = {}  # GITHUB_ENV
        self.extra_path = []  # GITHUB_PATH
        self.secret_values = [v for v in contexts["secrets"].values() if v]
        self.name = unique("lhd-gh-job")

    def host_path(self, path):
        """The host path of a path under WORK in the container."""
        return self.host_work / Path(path).relative_to(WORK)

    def image(self, steps):
        uses = [str(s.get("uses", "")) for s in steps]
        return self.runner.python_image if any(u.startswith("actions/setup-python@") for u in uses) \
            else self.runner.job_image

    def run(self, steps):
        (self.host_path(self.workspace)).mkdir(parents=True, exist_ok=True)
        self.host_path(f"{WORK}/_temp/_runner_file_commands").mkdir(parents=True, exist_ok=True)
        self.runner.containers.append(self.name)
        mounts = ["-v", f"{self.host_work}:{WORK}", *self.runner.volumes]
        if self.runner.socket:
            mounts += ["-v", f"{self.runner.socket}:/var/run/docker.sock"]
        hosts = [arg for host in network_hosts(self.runner.network) for arg in ("--add-host", host)]
        docker("run", "-d", "--name", self.name, "--hostname", self.name, "--network", self.runner.network,
               *self.runner.labels, *mounts, *hosts, "-e", f"HOME={HOME}", "--entrypoint", "sleep", self.image(steps),
               "infinity")
        try:
            self.exec(["mkdir", "-p", HOME], {})
            status = Status()
            for index, step in enumerate(steps):
                self.step(index, step, status)
            self.result.outputs = {key: to_string(interpolate(value, self.contexts))
                                   for key, value in (self.workflow.jobs[self.job].get("outputs") or {}).items()}
        finally:
            docker("rm", "-f", "-v", self.name, check=False, timeout=120)

    def exec(self, argv, env, cwd=None, timeout=60):
        """argv in the job's container with env added. The variables go through a NUL-separated file in
        RUNNER_TEMP that the container reads and removes first: not on any command line (secrets), multi-line
        values kept (SSH_KEY), and the host's docker CLI keeps its own environment (DOCKER_HOST, HOME)."""
        prefix = []
        if env:
            name = f"{WORK}/_temp/.env-{uuid.uuid4().hex}"
            self.host_path(name).write_bytes(b"".join(f"{k}={v}".encode() + b"\0" for k, v in env.items()))
            prefix = ["bash", "-c", 'mapfile -d "" -t kv <"$0" && rm -f -- "$0" && exec env "${kv[@]}" "$@"', name]
        return run(["docker", "exec", *(["-w", cwd] if cwd else []), self.name, *prefix, *argv],
                   check=False, timeout=timeout, stdin=DEVNULL)

    def mask(self, text):
        for value in sorted(self.secret_values, key=len, reverse=True):
            for part in [value, *value.splitlines()]:
                if len(part.strip()) >= 3:
                    text = text.replace(part, "***")
        return text

    def variables(self, step_id, files):
        """GITHUB_* and RUNNER_* as GitHub sets them for a step."""
        e = self.event
        return {"CI": "true", "GITHUB_ACTIONS": "true", "GITHUB_SHA": e.sha, "GITHUB_REF": e.ref,
                "GITHUB_REF_NAME": e.ref_name, "GITHUB_REF_TYPE": "branch", "GITHUB_REF_PROTECTED": "false",
                "GITHUB_EVENT_NAME": e.name, "GITHUB_ACTOR": e.actor, "GITHUB_TRIGGERING_ACTOR": e.actor,
                "GITHUB_BASE_REF": e.base_ref, "GITHUB_HEAD_REF": e.head_ref,
                "GITHUB_REPOSITORY": self.workflow.repository,
                "GITHUB_REPOSITORY_OWNER": self.workflow.repository.split("/")[0],
                "GITHUB_WORKSPACE": self.workspace, "GITHUB_JOB": self.job, "GITHUB_WORKFLOW": self.workflow.name,
                "GITHUB_RUN_ID": "1", "GITHUB_RUN_NUMBER": "1", "GITHUB_RUN_ATTEMPT": str(self.run_.attempt),
                "GITHUB_ACTION": step_id, "GITHUB_SERVER_URL": "https://github.com",
                "GITHUB_API_URL": "https://api.github.com", "GITHUB_GRAPHQL_URL": "https://api.github.com/graphql",
                "GITHUB_EVENT_PATH": f"{WORK}/_temp/_github_workflow/event.json",
                "RUNNER_OS": "Linux", "RUNNER_ARCH": "X64", "RUNNER_NAME": "lhd-github-steps",
                "RUNNER_ENVIRONMENT": "github-hosted", "RUNNER_TEMP": f"{WORK}/_temp",
                "RUNNER_TOOL_CACHE": "/opt/hostedtoolcache", "RUNNER_WORKSPACE": f"{WORK}/{self.repo}",
                "HOME": HOME, **files}

    def step(self, index, step, status):
        step_id = step.get("id") or f"__step{index}"
        name = step.get("name") or (f"Run {step['uses']}" if "uses" in step
                                    else f"Run {str(step.get('run')).strip().splitlines()[0]}")
        contexts = {**self.contexts, "env": {**self.contexts["env"], **self.extra_env}}
        if not condition(step.get("if"), contexts, status):
            self.result.steps.append(StepResult(name, "skipped"))
            self.contexts["steps"][step_id] = {"outputs": {}, "outcome": "skipped", "conclusion": "skipped"}
            return
        env = dict(contexts["env"])
        for key, value in (step.get("env") or {}).items():
            env[key] = to_string(interpolate(value, {**contexts, "env": env}))
        started = time.perf_counter()
        if "uses" in step:
            with_ = {k: to_string(interpolate(v, {**contexts, "env": env})) for k, v in (step.get("with") or {}).items()}
            code, output, outputs = self.action(step["uses"], with_)
        else:
            code, output, outputs = self.script(step, step_id, env, contexts)
        outcome = "success" if code == 0 else "failure"
        output = self.mask(output)
        self.result.annotations += [line for line in output.splitlines() if line.startswith(("::error", "::warning"))]
        self.result.steps.append(StepResult(name, outcome, output, time.perf_counter() - started, outputs))
        conclusion = "success" if outcome == "failure" and step.get("continue-on-error") else outcome
        self.contexts["steps"][step_id] = {"outputs": outputs, "outcome": outcome, "conclusion": conclusion}
        if conclusion == "failure":
            status.succeeded, status.failed = False, True
            self.result.result = "failure"

    def script(self, step, step_id, env, contexts):
        run_text = interpolate(step["run"], {**contexts, "env": env})
        defaults = {**(self.workflow.defaults.get("run") or {}),
                    **((self.workflow.jobs[self.job].get("defaults") or {}).get("run") or {})}
        shell = step.get("shell", defaults.get("shell"))
        if shell not in SHELLS:
            raise Unsupported(f"step {step_id}: shell {shell!r} is not supported by this runner")
        token = uuid.uuid4().hex
        script = f"{WORK}/_temp/{token}.sh"
        self.host_path(script).write_text(run_text)
        files = {name: f"{WORK}/_temp/_runner_file_commands/{name.lower()}_{token}"
                 for name in ("GITHUB_OUTPUT", "GITHUB_ENV", "GITHUB_PATH", "GITHUB_STEP_SUMMARY", "GITHUB_STATE")}
        for path in files.values():
            self.host_path(path).touch()
        event = self.host_path(f"{WORK}/_temp/_github_workflow/event.json")
        event.parent.mkdir(parents=True, exist_ok=True)
        event.write_text(json.dumps(self.contexts["github"]["event"]))
        variables = {**self.extra_env, **env, **self.variables(step_id, files)}
        if self.extra_path:
            variables["PATH"] = ":".join([*reversed(self.extra_path),
                                          "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"])
        argv = [part.replace("{0}", script) for part in shlex.split(SHELLS[shell])]
        workdir = step.get("working-directory", defaults.get("working-directory"))
        cwd = workdir if workdir and workdir.startswith("/") else f"{self.workspace}/{workdir}" if workdir \
            else self.workspace
        limit = max(1, self.deadline - time.monotonic())
        if step.get("timeout-minutes"):
            limit = min(limit, float(step["timeout-minutes"]) * 60)
        try:
            done = self.exec(argv, variables, cwd=cwd, timeout=limit)
            code, output = done.returncode, done.stdout + done.stderr
        except TimeoutExpired:
            code, output = 124, f"the step passed its time limit ({limit:.0f} s)"
        outputs = parse_file_commands(self.host_path(files["GITHUB_OUTPUT"]).read_text())
        self.extra_env.update(parse_file_commands(self.host_path(files["GITHUB_ENV"]).read_text()))
        self.extra_path += [p for p in self.host_path(files["GITHUB_PATH"]).read_text().splitlines() if p.strip()]
        return code, output, outputs

    def action(self, uses, with_):
        """The two actions the workflow uses, done by this runner (see the module's docstring)."""
        action = uses.split("@")[0]
        if action == "actions/checkout":
            return self.checkout(with_)
        if action == "actions/setup-python":
            done = self.exec(["python3", "--version"], {})
            want = with_.get("python-version", "")
            output = (f"setup-python stand-in: the job runs in {self.runner.python_image}, "
                      f"{(done.stdout + done.stderr).strip()} (the workflow asks for {want})")
            return done.returncode, output, {"python-version": (done.stdout.split() or [""])[-1]}
        raise Unsupported(f"the action {uses} is not supported by this runner")

    def checkout(self, with_):
        """actions/checkout for this event: the commit fetched into the workspace; a push's branch checked out
        as actions/checkout does (git checkout -B BRANCH refs/remotes/origin/BRANCH), a pull request's merge
        ref detached; origin is the repository's GitHub URL, no credential persisted."""
        e = self.event
        path = self.host_path(self.workspace)
        depth = int(with_.get("fetch-depth", "1") or 1)
        remote_ref = (f"refs/remotes/pull/{e.number}/merge" if e.name == "pull_request"
                      else f"refs/remotes/origin/{e.ref_name}")
        commands = [["init", "--quiet", path], ["-C", path, "remote", "add", "origin", self.runner.clone_url],
                    # the bare repository belongs to the server's deploy user: the upload-pack git starts is
                    # told it is safe too (Repository.push does the same for receive-pack)
                    ["-C", path, "-c", "protocol.version=2", "fetch", "--quiet", "--no-tags", "--prune",
                     "--upload-pack", "git -c safe.directory=* upload-pack",
                     *([f"--depth={depth}"] if depth > 0 else []), "origin", f"+{e.sha}:{remote_ref}"],
                    ["-C", path, "checkout", "--quiet", "--force",
                     *(["--detach", remote_ref] if e.name == "pull_request" else ["-B", e.ref_name, remote_ref])],
                    ["-C", path, "remote", "set-url", "origin", f"https://github.com/{self.workflow.repository}"]]
        output = []
        for argv in commands:
            done = run(["git", "-c", "safe.directory=*", "-c", "init.defaultBranch=main", *argv], check=False,
                       timeout=300)
            output.append(f"git {' '.join(str(a) for a in argv)}\n{done.stdout}{done.stderr}".strip())
            if done.returncode != 0:
                return done.returncode, "\n".join(output), {}
        if with_.get("persist-credentials", "true") != "false":
            output.append("checkout: persist-credentials is not false; this runner stores no credential anyway")
        return 0, "\n".join(output), {}


def substitutions(runner):
    """The report lines naming what stands in for GitHub's runner in these runs."""
    return [
        "github: the workflow's jobs run step by step by harness/github_steps.py: this is not GitHub's own runner",
        f"github: job container: {runner.job_image} (docker CLI stand-in, kit/jobs/docker) for ubuntu-latest, the "
        "runner engine's socket at /var/run/docker.sock (GitHub's ubuntu runners have Docker on the host)",
        f"github: actions/setup-python: the job's container is {runner.python_image} (kit/jobs/python)",
        "github: actions/checkout: a git fetch of the commit from the test's bare repository by the runner, "
        "persist-credentials false",
        "github: GITHUB_TOKEN / GITHUB_ACTOR: the test registry's login (Debian docker-registry answering as ghcr.io)",
    ]
