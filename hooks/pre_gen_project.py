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
OWNER = r"[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?"
REPO = r"[a-z0-9](?:[a-z0-9._-]{0,98}[a-z0-9])?"
# The local part takes RFC 5322's atext and dots (o'brien@example.com is a real address).
EMAIL = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@" + DOMAIN
SEMVER = r"\d+\.\d+\.\d+"
VSEMVER = r"v\d+\.\d+\.\d+"
MINOR = r"\d+\.\d+"

# name -> (regex the whole value must match, the rule in words)
RULES = {
    "project_name": (SLUG, "2-39 characters: a lowercase letter, then lowercase letters, digits or '_'"),
    "swarm_name": (SLUG, "2-39 characters: a lowercase letter, then lowercase letters, digits or '_'"),
    "repo_owner": (OWNER, "lowercase letters, digits, '.', '_' or '-', starting and ending with a letter or digit "
                          "(image names must be lowercase)"),
    "repo_name": (REPO, "lowercase letters, digits, '.', '_' or '-', starting and ending with a letter or digit"),
    "app_domain": (DOMAIN, "a lowercase domain name such as example.com, without scheme, port or path"),
    # One question for both TLS answers: cookiecutter 2.7.1 asks every public key (no conditional
    # questions in prompt_for_config) and cruft 2.16.0 carries only public keys from one render to
    # the next (cruft/_commands/utils/generate.py, _generate_output), so the Let's Encrypt account
    # rides on the tls answer and __letsencrypt_email is derived from it (cookiecutter.json).
    "tls": ("origin-certs|letsencrypt|" + EMAIL,
            "origin-certs, letsencrypt, or the e-mail address of a Let's Encrypt account such as ops@example.com"),
    "__letsencrypt_email": (EMAIL, "an e-mail address such as ops@example.com"),
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
    "_crystal_version": (SEMVER, "a release number such as 1.21.0"),
    "_lucky_version": (SEMVER, "a release number such as 1.5.0"),
    "_lucky_cli_version": (SEMVER, "a release number such as 1.5.0"),
    "_hasura_version": (VSEMVER, "a Hasura v2 image tag such as v2.51.0"),
    "_postgres_version": (MINOR + "|" + SEMVER, "an image tag such as 18.1"),
    "_traefik_version": (VSEMVER, "a Traefik v3 image tag such as v3.7.15"),
    "_socket_proxy_version": (VSEMVER, "an image tag such as v0.4.2"),
    "_alpine_version": (MINOR, "an Alpine release such as 3.22"),
    "_prometheus_version": (VSEMVER, "an image tag such as v3.16.0"),
    "_alertmanager_version": (VSEMVER, "an image tag such as v0.28.1"),
    "_node_exporter_version": (VSEMVER, "an image tag such as v1.9.1"),
    "_grafana_version": (SEMVER, "an image tag such as 12.1.0"),
    "_cadvisor_version": (VSEMVER, "an image tag such as v0.60.5"),
    "__registry": (r"(?:registry\.gitlab\.com|ghcr\.io)/" + OWNER + "/" + REPO,
                   "registry.gitlab.com or ghcr.io, then /<repo_owner>/<repo_name>"),
    "__git_url": (r"https://(?:gitlab|github)\.com/" + OWNER + "/" + REPO + r"\.git",
                  "https://gitlab.com or https://github.com, then /<repo_owner>/<repo_name>.git"),
}

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
    found = []
    for name, (pattern, rule) in RULES.items():
        value = answers[name]
        if not re.fullmatch(pattern, value):
            found.append(f"{name}={value!r} is not valid: {rule}.")
    if found:
        return found
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
