"""What the generated README tells its reader to run agrees with the scripts and with the machines they run on
(the contradictions the generated-README review of 2026-12 found, each held by a test)."""

import os
import re
import shutil
from pathlib import Path

import pytest
import yaml

from harness.combinations import ROOT, SUPPORTED
from harness.proc import run
from hooks import post_gen_project as post


def shell_lines(text):
    """The lines of every ```sh block of a Markdown text."""
    return [line for block in re.findall(r"```sh\n(.*?)```", text, re.S) for line in block.splitlines()]


def test_no_system_wide_pip_install(default_project):
    """A bare `pip install` fails where Python is externally managed (PEP 668, Debian 12 and Ubuntu 23.04 on):
    tools are installed with pipx or into a venv, in the generated README, its docs/ and the template's README."""
    for readme in (default_project / "README.md", *sorted((default_project / "docs").glob("*.md")), ROOT / "README.md"):
        bare = [line for line in shell_lines(readme.read_text()) if re.match(r"\s*pip3? install", line)]
        assert bare == [], f"{readme}: {bare}"


def test_cruft_is_pinned_where_the_readme_installs_it(default_project):
    """The generated project's upgrade page (docs/upgrading.md, which the README links) installs the cruft its
    CI job runs (cookiecutter.json's _cruft_version), and so does any README line that installs it."""
    assert "(docs/upgrading.md)" in (default_project / "README.md").read_text()
    lines = shell_lines((default_project / "README.md").read_text() + (default_project / "docs/upgrading.md").read_text())
    installs = [line for line in lines if "install cruft" in line]
    assert installs and all("cruft==" in line for line in installs), installs



def test_first_commit_lands_on_the_branch_ci_deploys(bakes, tmp_path, capsys):
    """The hook's next steps, run as printed with stock git (no init.defaultBranch, so a bare `git init` makes
    master), put the first commit on main, a branch the GitHub workflow builds and deploys."""
    rendered = bakes.get(next(combo for combo in SUPPORTED if combo["ci"] == "github"))
    project = Path(shutil.copytree(rendered, tmp_path / rendered.name, symlinks=True))
    post.print_next_steps({"project_name": project.name})
    step = next(line for line in capsys.readouterr().out.splitlines() if "git init" in line)
    env = {"HOME": str(tmp_path), "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t", "PATH": os.environ["PATH"]}
    run(["bash", "-c", step.strip()], cwd=project.parent, env=env)
    branch = run(["git", "branch", "--show-current"], cwd=project, env=env).stdout.strip()
    pushed = yaml.safe_load((project / ".github/workflows/ci.yml").read_text())[True]["push"]["branches"]
    assert branch == "main" and branch in pushed


# The production path's runnable blocks: `<!-- runbook: step=N where=workstation|server as=you|deploy|root -->`
# on the line right before a ```sh fence (tests/pipeline runs them; this holds their shape in every combination).
MARKER = re.compile(r"^<!-- runbook: (.*) -->$")
MARKER_FORM = re.compile(r"step=([1-9][0-9]*) where=(workstation|server) as=(you|deploy|root)")


def runbook(text):
    """[(step, where, as, block text)] of the marked blocks, in order; asserts each marker's form and fence."""
    lines, found = text.splitlines(), []
    for i, line in enumerate(lines):
        marker = MARKER.match(line)
        if not marker:
            assert "runbook:" not in line, f"line {i + 1}: not a runbook marker: {line!r}"
            continue
        form = MARKER_FORM.fullmatch(marker.group(1))
        assert form, f"line {i + 1}: marker {line!r} is not `step=N where=workstation|server as=you|deploy|root`"
        assert lines[i + 1] == "```sh", f"line {i + 1}: marker not right before a ```sh fence: {lines[i + 1]!r}"
        end = lines.index("```", i + 2)
        found.append((int(form.group(1)), form.group(2), form.group(3), "\n".join(lines[i + 2:end])))
    return found


def test_production_path_is_one_marked_runbook(combo, bakes):
    """The README's production path is numbered steps in order, each runnable block marked (where, as whom);
    placeholders are shell variables set in an earlier marked block, never <angle brackets>; the images are
    pushed and `script/deploy --first` runs before CI is set up, and the last deploy step checks /version."""
    text = (bakes.get(combo) / "README.md").read_text()
    blocks = runbook(text)
    steps = [step for step, *_ in blocks]
    assert steps == sorted(steps) and steps[0] == 1, steps
    headings = [int(n) for n in re.findall(r"^### ([0-9]+)\. ", text, re.M)]
    assert headings == list(range(1, len(headings) + 1)) and set(steps) <= set(headings), (headings, steps)
    assigned = set()
    for step, where, who, block in blocks:
        assert not re.search(r"<[A-Za-z][^>]*>", block), f"step {step}: angle-bracket placeholder in\n{block}"
        assigned |= set(re.findall(r"^([A-Z][A-Z0-9_]*)=", block, re.M))
        used = set(re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", block)) - {"HOME"}
        assert used <= assigned, f"step {step} ({where}, {who}) uses {sorted(used - assigned)} set nowhere before"

    def first(pattern):
        step = next((step for step, _, _, block in blocks if re.search(pattern, block, re.M)), None)
        assert step is not None, f"no marked block runs {pattern}"
        return step
    ci_step = int(re.search(r"^### ([0-9]+)\. CI/CD", text, re.M).group(1))
    assert first(r"^git push -u origin main") < first(r"^script/provision ") < first(r"^script/build --push") \
        <= first(r"script/deploy --first")
    assert first(r"script/deploy --first") == first(r"/version") < ci_step
    server_scripts = [who for _, where, who, block in blocks if where == "server" and re.search(r"^script/", block, re.M)]
    assert server_scripts and set(server_scripts) == {"deploy"}, server_scripts  # never as root


README_MAX_LINES = 160  # issue 27: "about 150 lines up front"; reference material lives in docs/


def anchor(heading):
    """The fragment GitHub and GitLab give a Markdown heading: lower case, punctuation but - and _ dropped,
    spaces to -."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_readme_is_short_and_its_links_resolve(combo, bakes):
    """The rendered README is about 150 lines (at most README_MAX_LINES) in every combination; every relative
    link of the README and of docs/ names a file of the project, and a #fragment a heading of that file."""
    project = bakes.get(combo)
    readme = (project / "README.md").read_text()
    assert len(readme.splitlines()) <= README_MAX_LINES, len(readme.splitlines())
    assert re.search(r"\]\(docs/[^)]+\.md", readme), "the README links its reference pages under docs/"
    for page in [project / "README.md", *sorted((project / "docs").glob("*.md"))]:
        for target, fragment in re.findall(r"\]\(([^)#:]+)(?:#([^)]*))?\)", page.read_text()):
            path = (page.parent / target).resolve().relative_to(project.resolve())
            assert (project / path).is_file(), f"{page.name} links {target}, which is not a file of the project"
            if fragment and path.suffix == ".md":
                headings = {anchor(h) for h in re.findall(r"^#+ (.+)$", (project / path).read_text(), re.M)}
                assert fragment in headings, f"{page.name} links {target}#{fragment}: no such heading"


def test_server_step_is_script_provision(combo, bakes):
    """Issue 24: the README's server step is `script/provision` from the workstation (with the CI key when there
    is CI, so provision authorizes it, and the read-only clone key made before it), then the registry login; the
    manual root path (useradd, ufw) is in docs/provisioning.md's "By hand", which the step links."""
    project = bakes.get(combo)
    text = (project / "README.md").read_text()
    blocks = runbook(text)
    provision = [block for _, where, _, block in blocks if re.search(r"^script/provision ", block, re.M)]
    assert len(provision) == 1 and [where for _, where, _, b in blocks if b == provision[0]] == ["workstation"]
    command = re.search(r"^script/provision .*?[^\\]$", provision[0], re.M | re.S).group(0)
    key = re.search(r"--key (\S+)", command)
    assert (key is not None) == (combo["ci"] != "none"), command
    clone_key = re.search(r"--clone-key (\S+)", command).group(1)
    made = "\n".join(block for step, _, _, block in blocks if block != provision[0] and "ssh-keygen" in block)
    for needed in [clone_key, *([key.group(1).removesuffix(".pub")] if key else [])]:
        assert f"-f {needed}\n" in made + "\n", f"{needed} is made before script/provision"
    for manual in ("useradd", "ufw ", "authorized_keys", "script/bootstrap --swarm\n"):
        assert manual not in "\n".join(block for *_, block in blocks), manual
    assert "(docs/provisioning.md#by-hand)" in text
    provisioning = (project / "docs/provisioning.md").read_text()
    assert "\n## By hand\n" in provisioning, "docs/provisioning.md has no \"By hand\" section"
    by_hand = provisioning.split("\n## By hand\n", 1)[1]
    assert "useradd" in by_hand and "script/bootstrap --swarm" in by_hand


def test_docs_reach_the_repository(default_project, tmp_path):
    """The README's pages are committed with the project: its .gitignore ignores none of docs/ or CHANGELOG.md
    (it once ignored /docs/, `crystal docs`' output, so `git add -A` left every page behind)."""
    project = Path(shutil.copytree(default_project, tmp_path / default_project.name, symlinks=True))
    run(["git", "init", "-q"], cwd=project)
    pages = [str(p.relative_to(project)) for p in sorted((project / "docs").glob("*.md"))] + ["CHANGELOG.md"]
    ignored = run(["git", "check-ignore", "--no-index", *pages], cwd=project, check=False).stdout.split()
    assert len(pages) > 5 and ignored == [], ignored


def test_staging_has_its_own_domain_in_readme_and_ci(combo, bakes):
    """The README bootstraps the staging server with `--domain D`, and the CI file links the staging environment
    to https://api.D, production to https://api.<app_domain> (both CI files once gave staging production's URL)."""
    if combo["ci"] == "none":
        pytest.skip("no CI file")
    project = bakes.get(combo)
    domain = re.search(r"script/bootstrap --swarm\s+--domain (\S+?)`", (project / "README.md").read_text()).group(1)
    assert domain == f"staging.{combo.get('app_domain', 'example.com')}", domain
    if combo["ci"] == "gitlab":
        config = yaml.safe_load((project / ".gitlab-ci.yml").read_text())
        urls = {config[job]["environment"]["name"]: config[job]["environment"]["url"].replace(
            "$APP_DOMAIN", config[job]["variables"]["APP_DOMAIN"]) for job in ("deploy-staging", "deploy-production")}
    else:
        workflow = yaml.safe_load((project / ".github/workflows/ci.yml").read_text())
        url = workflow["jobs"]["deploy"]["environment"]["url"]
        assert url == "${{ format('https://api.{0}', github.ref_name == 'main' && env.PRODUCTION_DOMAIN || env.STAGING_DOMAIN) }}"
        urls = {"staging": f"https://api.{workflow['env']['STAGING_DOMAIN']}",
                "production": f"https://api.{workflow['env']['PRODUCTION_DOMAIN']}"}
    assert urls == {"staging": f"https://api.{domain}", "production": f"https://api.{domain.removeprefix('staging.')}"}


def test_letsencrypt_step_says_staging_first_and_one_edge_node(combo, bakes):
    """Issue 22: with Let's Encrypt, the README's TLS step says to try the staging CA first and why (the rate
    limits), that the CA is a deploy-time setting (ACME_CA_SERVER in the env file), and that the certificates live
    on the edge node alone (a single point of failure), linking docs/letsencrypt.md; origin certificates say none of
    it."""
    text = (bakes.get(combo) / "README.md").read_text()
    step = text[text.index("### 4. DNS and TLS"):text.index("### 5.")]
    said = ["staging CA first", "ACME_CA_SERVER", "5 certificates a week", "single point of\nfailure",
            "(docs/letsencrypt.md)"]
    if combo.get("tls", "origin-certs") == "origin-certs":
        assert "ACME_CA_SERVER" not in step
    else:
        assert [s for s in said if s not in step] == [], step
