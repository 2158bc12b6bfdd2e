"""Validate every answer before cookiecutter writes a single file.

Cookiecutter renders this file with the answers, runs it, and deletes the
half-made output directory when it exits non-zero. Each rule below is data:
a failing answer prints one line naming the variable, the value and the rule.
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
EMAIL = r"[A-Za-z0-9._%+-]+@" + DOMAIN
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
    "letsencrypt_email": (EMAIL, "an e-mail address such as ops@example.com"),
    "git_host": (r"gitlab|github", "one of: gitlab, github"),
    "ci": (r"gitlab|github|none", "one of: gitlab, github, none"),
    "dev_sync": (r"compose-watch|docker-sync", "one of: compose-watch, docker-sync"),
    "tls": (r"origin-certs|letsencrypt", "one of: origin-certs, letsencrypt"),
    "monitoring": (r"yes|no", "one of: yes, no"),
    "template_update_check": (r"yes|no", "one of: yes, no"),
    "crystal_version": (SEMVER, "a release number such as 1.21.0"),
    "lucky_version": (SEMVER, "a release number such as 1.5.0"),
    "lucky_cli_version": (SEMVER, "a release number such as 1.5.0"),
    "hasura_version": (VSEMVER, "a Hasura v2 image tag such as v2.51.0"),
    "postgres_version": (MINOR + "|" + SEMVER, "an image tag such as 18.1"),
    "traefik_version": (VSEMVER, "a Traefik v3 image tag such as v3.7.15"),
    "socket_proxy_version": (VSEMVER, "an image tag such as v0.4.2"),
    "alpine_version": (MINOR, "an Alpine release such as 3.22"),
    "prometheus_version": (VSEMVER, "an image tag such as v3.16.0"),
    "alertmanager_version": (VSEMVER, "an image tag such as v0.28.1"),
    "node_exporter_version": (VSEMVER, "an image tag such as v1.9.1"),
    "grafana_version": (SEMVER, "an image tag such as 12.1.0"),
    "cadvisor_version": (VSEMVER, "an image tag such as v0.60.5"),
}

# Rules that tie answers together: (predicate that must hold, message).
COMBINATION_RULES = [
    (lambda a: a["ci"] != "github" or a["git_host"] == "github",
     "ci=github needs git_host=github (GitHub Actions only runs on GitHub repositories)"),
    (lambda a: a["ci"] != "gitlab" or a["git_host"] == "gitlab",
     "ci=gitlab needs git_host=gitlab (GitLab CI only runs on GitLab repositories)"),
    (lambda a: a["hasura_version"].startswith("v2."),
     "hasura_version must be a v2 release: the metadata and config files are Hasura v2 formats"),
    (lambda a: a["traefik_version"].startswith("v3."),
     "traefik_version must be a v3 release: the configuration uses the v3 swarm provider"),
    (lambda a: int(a["postgres_version"].split(".")[0]) >= 18,
     "postgres_version must be 18 or newer: the data volume is mounted at /var/lib/postgresql"),
]

RESERVED_NAMES = {"traefik", "monitoring", "docker", "ingress", "bridge", "host", "none"}


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
