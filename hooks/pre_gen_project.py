"""Validate every answer before cookiecutter writes a single file.

Cookiecutter renders this file with the answers, runs it, and deletes the
half-made output directory when it exits non-zero. Each rule below is data:
a failing answer prints one line naming the variable, the value and the rule.

The pins (`_*_version`) and derived values (`__*`) are never asked, yet can be
overridden (`cookiecutter . --no-input _crystal_version=1.22.0`): cookiecutter
2.7.1 copies `_` keys unrendered and renders `__` keys without a question
(cookiecutter/prompt.py, prompt_for_config), and lets extra context replace any
key cookiecutter.json defines (cookiecutter/generate.py,
apply_overwrites_to_context), so they are validated here like the answers.

An answer holding Jinja syntax given without a prompt is evaluated before this
hook runs; hooks/jinja_guard.py (a Jinja extension, cookiecutter.json
`_extensions`) refuses it before that. Typed at a prompt it is not evaluated,
and JINJA_MARKERS below refuses it here.
"""

import json
import re
import sys

# Cookiecutter renders the answers in here; tojson escapes quotes, so the raw
# string cannot be broken out of by any answer.
ANSWERS = r'''{{ cookiecutter | tojson }}'''

SLUG = r"[a-z][a-z0-9_]{1,38}"
DNS_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
DOMAIN = "(?:" + DNS_LABEL + r"\.)+[a-z]{2,63}"
# repo_owner and repo_name are path components of the image names (<registry>/<owner>/<name>/lucky):
# Docker's reference grammar allows a separator of one '.', one or two '_', or any number of '-'
# between lowercase letters and digits (distribution/reference regexp.go, pathComponent and
# separator, commit 00a09fa3), so a..b, a._b and a___b are refused although GitLab takes them.
PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
OWNER = r"(?=.{1,64}\Z)" + PATH_COMPONENT
REPO = r"(?=.{1,100}\Z)" + PATH_COMPONENT
# The local part is an RFC 5322 dot-atom (section 3.4.1): atext (o'brien@example.com is a real address)
# with single dots between, none leading or trailing. Let's Encrypt's Boulder refuses other contact
# addresses (policy/pa.go, ValidEmail: Go's net/mail ParseAddress, whose consumeAtom refuses a
# "leading dot", "double dot" or "trailing dot in atom", src/net/mail/message.go).
ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
EMAIL = ATEXT + r"(?:\." + ATEXT + ")*@" + DOMAIN
DOT_ATOM = "before the @, no leading, trailing or double dot: Let's Encrypt refuses those"
# Version numbers are ASCII digits: \d would also take '١٨' or '１２', which no image tag has.
SEMVER = r"[0-9]+\.[0-9]+\.[0-9]+"
VSEMVER = "v" + SEMVER
MINOR = r"[0-9]+\.[0-9]+"

# name -> (regex the whole value must match, the rule in words)
RULES = {
    "project_name": (SLUG, "2-39 characters: a lowercase letter, then lowercase letters, digits or '_'"),
    "swarm_name": (SLUG, "2-39 characters: a lowercase letter, then lowercase letters, digits or '_'"),
    "repo_owner": (OWNER, "1-64 lowercase letters or digits, separated by one '.', one or two '_' or any number "
                          "of '-' (a path component of Docker's image names)"),
    "repo_name": (REPO, "1-100 lowercase letters or digits, separated by one '.', one or two '_' or any number "
                        "of '-' (a path component of Docker's image names)"),
    "app_domain": (DOMAIN, "a lowercase domain name such as example.com, without scheme, port or path"),
    # One question for both TLS answers: cookiecutter 2.7.1 asks every public key (no conditional
    # questions in prompt_for_config) and cruft 2.16.0 carries only public keys from one render to
    # the next (cruft/_commands/utils/generate.py, _generate_output), so the Let's Encrypt account
    # rides on the tls answer and __letsencrypt_email is derived from it (cookiecutter.json).
    "tls": ("origin-certs|letsencrypt|" + EMAIL,
            "origin-certs, letsencrypt, or the e-mail address of a Let's Encrypt account such as ops@example.com "
            "(" + DOT_ATOM + ")"),
    "__letsencrypt_email": (EMAIL, "an e-mail address such as ops@example.com (" + DOT_ATOM + ")"),
    "git_host": (r"gitlab|github", "one of: gitlab, github"),
    # cookiecutter.json lists ci as ["{{ cookiecutter.git_host }}", "none", "gitlab", "github"]: cookiecutter
    # 2.7.1 renders choice options with the answers given so far and, without input, takes the first
    # (cookiecutter/prompt.py, prompt_choice_for_config), so ci follows git_host unless given. The literal
    # values stay in the list because an override must be one of its raw entries
    # (cookiecutter/generate.py, apply_overwrites_to_context): ci=github given, and every .cruft.json
    # written before, which cruft passes back as extra context on update.
    "ci": (r"gitlab|github|none", "one of: gitlab, github, none"),
    "monitoring": (r"yes|no", "one of: yes, no"),
    "template_update_check": (r"yes|no", "one of: yes, no"),
    # Each pin has the tag shape its upstream publishes (none can be checked online here; where read):
    # crystallang/crystal:<X.Y.Z>-alpine (Docker/lucky/Dockerfile; crystal-lang/distribution-scripts
    # docker/Makefile takes CRYSTAL_VERSION=0.xy.z).
    "_crystal_version": (SEMVER, "a release number such as 1.21.0"),
    # Lucky's git tags are vX.Y.Z (luckyframework/lucky v1.5.0, v1.4.0 in ../shared/shards/MANIFEST.tsv);
    # shard.yml takes the number (~> 1.5.0) and Docker/lucky/Dockerfile clones --branch v<pin> of lucky_cli.
    "_lucky_version": (SEMVER, "a release number such as 1.5.0"),
    "_lucky_cli_version": (SEMVER, "a release number such as 1.5.0"),
    # hasura/graphql-engine:vX.Y.Z.cli-migrations-v3 (Docker/hasura/Dockerfile), the pin's own shape.
    "_hasura_version": (VSEMVER, "a Hasura v2 image tag such as v2.51.0"),
    # The postgres image has MAJOR.MINOR tags since PostgreSQL 10 ("10.10, 10", "9.6.15, 9.6, 9":
    # docker-library/official-images library/postgres, commit 00e7c7a2): postgres:18.3.0 does not exist.
    "_postgres_version": (MINOR, "a postgres image tag MAJOR.MINOR such as 18.3 (PostgreSQL 10 and later have "
                                 "two-part tags)"),
    # The major script/pg_upgrade moves data from (postgres:17.9 exists: docker-library/postgres 17/trixie/Dockerfile
    # ENV PG_VERSION 17.9-1.pgdg13+1, commit 6edb0a8c).
    "_postgres_previous_version": (MINOR, "a postgres image tag MAJOR.MINOR such as 17.9, of the major before "
                                          "_postgres_version's"),
    # traefik:vX.Y.Z and traefik:X.Y.Z both exist (official-images library/traefik, commit 00452b47); the
    # pin keeps the v.
    "_traefik_version": (VSEMVER, "a Traefik v3 image tag such as v3.7.15"),
    # tecnativa/docker-socket-proxy:vX.Y.Z, the pin's own shape (kit/kit.py builds its stand-in).
    "_socket_proxy_version": (VSEMVER, "an image tag such as v0.4.2"),
    # alpine:X.Y is the tag of each release branch ("3.16.2, 3.16, 3": official-images library/alpine,
    # commit 00214788).
    "_alpine_version": (MINOR, "an Alpine release such as 3.22"),
    # prom/prometheus, prom/alertmanager, prom/node-exporter: vX.Y.Z, the pins' own shape.
    "_prometheus_version": (VSEMVER, "an image tag such as v3.16.0"),
    "_alertmanager_version": (VSEMVER, "an image tag such as v0.28.1"),
    "_node_exporter_version": (VSEMVER, "an image tag such as v1.9.1"),
    # restic/restic:X.Y.Z without a v, the pin's own shape.
    "_restic_version": (SEMVER, "an image tag such as 0.19.1"),
    # grafana/grafana:X.Y.Z without a v, the pin's own shape.
    "_grafana_version": (SEMVER, "an image tag such as 12.1.0"),
    # ghcr.io/google/cadvisor is tagged X.Y.Z and vX.Y.Z (google/cadvisor
    # .github/workflows/publish-container.yml, commit 097d28e5: docker/metadata-action semver patterns for both).
    "_cadvisor_version": (VSEMVER, "an image tag such as v0.60.5"),
    "_docker_version": (SEMVER, "a Docker release such as 28.5.2 (the CI job image docker:<version>)"),
    "_python_version": (SEMVER, "a Python release such as 3.12.13 (the CI job image python:<version>-slim)"),
    "_cruft_version": (SEMVER, "a cruft release such as 2.16.0"),
    # Derived from git_host, repo_owner and repo_name (cookiecutter.json); an override must equal the
    # derived value (DERIVED below), so the shape here only words the first message.
    "__registry": (r"(?:registry\.gitlab\.com|ghcr\.io)/" + PATH_COMPONENT + "/" + PATH_COMPONENT,
                   "registry.gitlab.com or ghcr.io, then /<repo_owner>/<repo_name>"),
    "__git_url": (r"https://(?:gitlab|github)\.com/" + PATH_COMPONENT + "/" + PATH_COMPONENT + r"\.git",
                  "https://gitlab.com or https://github.com, then /<repo_owner>/<repo_name>.git"),
}

# Targets and dependencies of the template's shard.yml besides the project's own target.
SHARD_NAMES = ("lucky_tasks", "healthcheck", "lucky", "avram", "carbon", "carbon_sendgrid_adapter", "lucky_env",
               "lucky_task")

# What can only be told from one value once RULES hold: (names, predicate the value must meet, the rule).
VALUE_RULES = [
    # initdb makes the production superuser POSTGRES_USER=<project_name> (script/bootstrap). initdb
    # refuses pg_* itself ("role names cannot begin with pg_": postgresql src/bin/initdb/initdb.c), and
    # its bootstrap fails for public (role "public" does not exist) and none (role name "none" is
    # reserved): seen with initdb 15.18 (Debian 12).
    (("project_name",), lambda v: not v.startswith("pg_") and v not in ("public", "none"),
     "PostgreSQL refuses it as a role name (pg_*, public and none are reserved), and it names the "
     "database superuser"),
    # project_name names the shard and its server target (shard.yml). A second target of that name is
    # a duplicate YAML key, and bin/server is then built from tasks.cr or is the healthcheck probe
    # (review rows 16, 17). A dependency's name (row 18, "likely broken") did not break shards 0.20 in a
    # toy shard named like its dependency (seen with the kit's crystal image); it is refused so the
    # project, its binary and lib/<name> never share a name. tests/render/test_hooks.py checks
    # SHARD_NAMES against the template's shard.yml.
    (("project_name",), lambda v: v not in SHARD_NAMES,
     "it clashes with a target or dependency of the project's shard.yml (" + ", ".join(SHARD_NAMES) + ")"),
    # GitLab refuses project paths ending in .git or .atom, and the clone URL of app.git reads
    # .../app.git.git (security review 2026-12, section 6, rows 41 and 75).
    (("repo_name",), lambda v: not v.endswith((".git", ".atom")),
     "it must not end in .git or .atom (GitLab refuses such project paths; the clone URL would end in .git.git)"),
]

# Derived values an override may not change (cookiecutter.json derives them; CI logs in to the
# registry of git_host, and the servers pull from it): name -> (the value it must have, what that is).
REGISTRY_OF = {"gitlab": "registry.gitlab.com", "github": "ghcr.io"}
GIT_SERVER_OF = {"gitlab": "https://gitlab.com", "github": "https://github.com"}
DERIVED = {
    "__registry": (lambda a: f"{REGISTRY_OF[a['git_host']]}/{a['repo_owner']}/{a['repo_name']}",
                   "the registry of git_host, then /<repo_owner>/<repo_name>"),
    "__git_url": (lambda a: f"{GIT_SERVER_OF[a['git_host']]}/{a['repo_owner']}/{a['repo_name']}.git",
                  "the git server of git_host, then /<repo_owner>/<repo_name>.git"),
}

# Cookiecutter evaluates an answer holding Jinja syntax as code before this hook runs (hooks/jinja_guard.py
# refuses those); an answer typed at a prompt is not evaluated, and is refused here. Spelled in pieces:
# cookiecutter renders this file with Jinja.
JINJA_MARKERS = ("{" + "{", "{" + "%", "{" + "#")

# Rules that tie answers together: (predicate that must hold, message).
COMBINATION_RULES = [
    (lambda a: a["ci"] != "github" or a["git_host"] == "github",
     "ci=github needs git_host=github (GitHub Actions only runs on GitHub repositories)"),
    (lambda a: a["ci"] != "gitlab" or a["git_host"] == "gitlab",
     "ci=gitlab needs git_host=gitlab (GitLab CI only runs on GitLab repositories)"),
    (lambda a: a["_hasura_version"].startswith("v2."),
     "_hasura_version must be a v2 release: the metadata and config files are Hasura v2 formats"),
    (lambda a: a["_traefik_version"].startswith("v3."),
     "_traefik_version must be a v3 release: the configuration uses the v3 swarm provider"),
    (lambda a: int(a["_postgres_version"].split(".")[0]) >= 18,
     "_postgres_version must be 18 or newer: the data volume is mounted at /var/lib/postgresql"),
    (lambda a: int(a["_postgres_previous_version"].split(".")[0]) == int(a["_postgres_version"].split(".")[0]) - 1,
     "_postgres_previous_version must be of the major just before _postgres_version's (script/pg_upgrade moves "
     "one major at a time)"),
]

RESERVED_NAMES = {"traefik", "monitoring", "docker", "ingress", "bridge", "host", "none"}
# Words YAML 1.1 reads as booleans or null: unquoted in a generated file they stop being names.
YAML_WORDS = {"yes", "no", "on", "off", "true", "false", "null"}
# Swarm limits names: services 63 characters, configs and secrets 64. The longest the stacks make
# are `<swarm_name>_monitoring_discovery-proxy` (a service: +26) and
# `<swarm_name>_grafana_admin_password_<12-character hash>` (a secret: +36), so 64 - 36 = 28.
# tests/render/test_bad_input.py renders the longest allowed name and checks every name against the limits.
MAX_SWARM_NAME = 28
# A host name is at most 253 characters; the longest the project routes is `alertmanager.<app_domain>`.
MAX_APP_DOMAIN = 253 - len("alertmanager.")


def problems(answers):
    """Return one message per broken rule, in a stable order."""
    found = [f"{name}={answers[name]!r} is not valid: it contains Jinja syntax ({', '.join(map(repr, JINJA_MARKERS))}), "
             "which cookiecutter runs as code when it comes from the command line or .cruft.json; give the value itself."
             for name in RULES if any(marker in str(answers[name]) for marker in JINJA_MARKERS)]
    if found:
        return found
    for name, (pattern, rule) in RULES.items():
        value = answers[name]
        if not re.fullmatch(pattern, value):
            found.append(f"{name}={value!r} is not valid: {rule}.")
    if found:
        return found
    for names, holds, rule in VALUE_RULES:
        for name in names:
            if not holds(answers[name]):
                found.append(f"{name}={answers[name]!r} is not valid: {rule}.")
    for name, (expected_of, what) in DERIVED.items():
        expected = expected_of(answers)
        if answers[name] != expected:
            found.append(f"{name}={answers[name]!r} is not valid: it must be {expected!r}, {what}.")
    for name in ("project_name", "swarm_name"):
        if answers[name] in RESERVED_NAMES:
            names = ", ".join(sorted(RESERVED_NAMES))
            found.append(f"{name}={answers[name]!r} is not valid: it clashes with a Docker or stack name in use ({names}).")
        if answers[name] in YAML_WORDS:
            found.append(f"{name}={answers[name]!r} is not valid: YAML reads it as a boolean or null, not a name.")
    if len(answers["swarm_name"]) > MAX_SWARM_NAME:
        found.append(f"swarm_name={answers['swarm_name']!r} is not valid: at most {MAX_SWARM_NAME} characters, so that "
                     "swarm's service, config and secret names stay within their 63/64-character limits "
                     "(swarm_name defaults to project_name: give a shorter swarm_name).")
    if len(answers["app_domain"]) > MAX_APP_DOMAIN:
        found.append(f"app_domain is not valid: {len(answers['app_domain'])} characters, at most {MAX_APP_DOMAIN} "
                     "so that alertmanager.<app_domain> stays within DNS's 253.")
    for holds, message in COMBINATION_RULES:
        if not holds(answers):
            found.append(message + ".")
    return found


def main():
    answers = json.loads(ANSWERS)
    found = problems(answers)
    if found:
        print("ERROR: " + found[0], file=sys.stderr)
        for extra in found[1:]:
            print("       " + extra, file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
