"""Fixtures of the dev-stack tier: pytest-docker's compose fixtures, overridden for the generated project, so
pytest-docker brings the development stack up and down through the project's own script/up and script/down
(harness/devstack.py says how)."""

import pytest
from pytest_docker.plugin import get_docker_services

from harness.devstack import make_stack


@pytest.fixture(scope="module")
def dev_project(image_mode, tmp_path_factory):
    """A default project, rendered, with its own compose project name and loopback ports."""
    return make_stack(tmp_path_factory.mktemp("dev"))


@pytest.fixture(scope="module")
def docker_compose_command(dev_project):
    return dev_project.compose_command()


@pytest.fixture(scope="module")
def docker_compose_file(dev_project):
    return dev_project.compose_files()


@pytest.fixture(scope="module")
def docker_compose_project_name(dev_project):
    return dev_project.name


@pytest.fixture(scope="module")
def docker_setup():
    return ["up"]  # script/up, through harness/compose_via_scripts


@pytest.fixture(scope="module")
def docker_cleanup():
    return ["down"]  # script/down, through harness/compose_via_scripts


@pytest.fixture(scope="module")
def dev_stack(dev_project, docker_compose_command, docker_compose_file, docker_compose_project_name, docker_setup,
              docker_cleanup):
    """The stack pytest-docker brought up with script/up; taken down with script/down (a forced down if that
    fails), then the images this throwaway project built are removed."""
    try:
        with get_docker_services(docker_compose_command, docker_compose_file, docker_compose_project_name,
                                 docker_setup, docker_cleanup):
            dev_project.set_up_by_pytest_docker()
            yield dev_project
    except Exception as error:  # noqa: BLE001 - pytest-docker raises a bare Exception when a compose command fails
        dev_project.notes.append(f"pytest-docker: {error}")
        dev_project.force_down()
        raise
    finally:
        dev_project.remove_images()
