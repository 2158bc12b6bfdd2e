"""The production stack on a local swarm, deployed by the project's own scripts."""

import pytest

from tests.conftest import bake
from tests.swarm.harness import Deployment, Swarm

SHA1, SHA2, SHA3, BROKEN = "aaaa1111", "bbbb2222", "cccc3333", "dead0000"
V1, V2, V3 = 20250101000000, 20250201000000, 20250301000000


def prepare(base, mode):
    """Render, bootstrap, build three versions and a broken one (not deployed yet)."""
    project = bake(base / "out")
    d = Deployment(project, base / "work", mode)
    d.build(SHA1)
    d.add_migration(V2, "add_priority_to_notes",
                    "    alter table_for(Note) do\n      add priority : Int32, default: 0\n    end",
                    "    alter table_for(Note) do\n      remove :priority\n    end")
    d.add_migration(V3, "create_tags",
                    "    create :tags do\n      primary_key id : Int64\n      add name : String\n    end",
                    "    drop :tags")
    d.build(SHA2)
    d.build(SHA3)
    d.broken_image(SHA1, BROKEN)
    return d


@pytest.fixture(scope="module")
def deployment(image_mode, tmp_path_factory, request):
    """`script/deploy --first` of SHA1 on a swarm; everything removed afterwards."""
    with Swarm() as swarm:
        d = prepare(tmp_path_factory.mktemp("swarm"), image_mode)
        try:
            d.first = d.script("deploy", "--first", SHA1)
            report = list(d.notes) + (["created a single-node swarm on 127.0.0.1 (left at teardown)"] if swarm.created else [])
            request.config._lhd_mode_report = getattr(request.config, "_lhd_mode_report", []) + report
            yield d
        finally:
            d.close()
