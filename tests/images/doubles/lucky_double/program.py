"""What the double "compiles": a project's migrations and seeds, embedded.

The real `crystal build` bakes migrations into the task runner; this reads
the same files and translates the subset of Avram's migration DSL the
template and its tests use (create/alter/drop table_for, add, remove,
add_timestamps, primary_key, execute) into SQL.
"""

import json
import re
from pathlib import Path

TYPES = {"Int64": "bigint", "Int32": "integer", "String": "text", "Bool": "boolean", "Time": "timestamptz",
         "Float64": "double precision", "UUID": "uuid", "JSON::Any": "jsonb"}


def table_name(model):
    """Avram's table name for a model: underscored and pluralised."""
    name = re.sub(r"(?<!^)(?=[A-Z])", "_", model).lower()
    if name.endswith("y") and not name.endswith(("ay", "ey", "oy", "uy")):
        return name[:-1] + "ies"
    if name.endswith(("s", "x", "ch", "sh")):
        return name + "es"
    return name + "s"


def target(expr):
    m = re.fullmatch(r"table_for\((\w+)\)", expr.strip())
    return table_name(m.group(1)) if m else expr.strip().lstrip(":")


def column(line):
    m = re.fullmatch(r"add (\w+) : ([\w:]+)(\?)?(?:, default: (.+))?", line)
    if not m:
        raise ValueError(f"unsupported column: {line}")
    name, kind, nullable, default = m.groups()
    ddl = f'"{name}" {TYPES[kind]}' + ("" if nullable else " NOT NULL")
    if default is not None:
        ddl += f" DEFAULT {default.strip().replace(chr(34), chr(39))}"
    return ddl


def translate(body):
    """Translate one `def migrate` / `def rollback` body to SQL statements."""
    statements, lines = [], [ln.strip() for ln in body.splitlines() if ln.strip()]
    i = 0
    while i < len(lines):
        line = lines[i]
        m = re.fullmatch(r"(create|alter) (.+) do", line)
        if m:
            table, parts, i = target(m.group(2)), [], i + 1
            while lines[i] != "end":
                inner = lines[i]
                if inner.startswith("primary_key"):
                    name = inner.split()[1]
                    parts.append(f'"{name}" bigserial PRIMARY KEY')
                elif inner == "add_timestamps":
                    parts += ['"created_at" timestamptz NOT NULL DEFAULT now()',
                              '"updated_at" timestamptz NOT NULL DEFAULT now()']
                elif inner.startswith("add "):
                    parts.append(("ADD COLUMN " if m.group(1) == "alter" else "") + column(inner))
                elif inner.startswith("remove "):
                    parts.append(f'DROP COLUMN "{inner.split()[1].lstrip(":")}"')
                else:
                    raise ValueError(f"unsupported migration line: {inner}")
                i += 1
            if m.group(1) == "create":
                statements.append(f'CREATE TABLE "{table}" ({", ".join(parts)})')
            else:
                statements.append(f'ALTER TABLE "{table}" {", ".join(parts)}')
        elif line.startswith("drop "):
            statements.append(f'DROP TABLE "{target(line[5:])}"')
        elif line.startswith("execute "):
            statements.append(json.loads(line[8:]))
        else:
            raise ValueError(f"unsupported migration line: {line}")
        i += 1
    return statements


def method_body(source, name):
    m = re.search(rf"def {name}\n(.*?)\n  end\n", source, re.S)
    return m.group(1) if m else ""


def migrations(project):
    found = []
    for path in sorted(Path(project, "db/migrations").glob("[0-9]*_*.cr")):
        source = path.read_text()
        klass = re.search(r"class (\S+) < Avram::Migrator::Migration::V1", source).group(1)
        found.append({"version": int(path.name.split("_")[0]), "name": klass,
                      "up": translate(method_body(source, "migrate")),
                      "down": translate(method_body(source, "rollback"))})
    return found


def sample_notes(project):
    path = Path(project, "tasks/db/seed/sample_data.cr")
    if not path.is_file():
        return []
    pattern = r'\{title: "([^"]*)", body: "([^"]*)", published: (true|false)\}'
    return [{"title": t, "body": b, "published": p == "true"} for t, b, p in re.findall(pattern, path.read_text())]


def compile_program(kind, project=None):
    program = {"kind": kind}
    if kind in ("server", "tasks", "lucky_cli") and project:
        program["migrations"] = migrations(project)
        program["sample_notes"] = sample_notes(project)
    return program


LAUNCHER = '''#!/usr/bin/env python3
# Built by the LHD Crystal toolchain double (tests/images/doubles): stands in
# for a compiled Lucky binary. Not product code.
import json, sys
from lucky_double.run import main
main(json.loads({program!r}), sys.argv[1:])
'''


def write_launcher(out, program):
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(LAUNCHER.format(program=json.dumps(program)))
    out.chmod(0o755)
