"""Render the template (cookiecutter, no prompts) for the tiers and the benchmarks."""

from pathlib import Path

from cookiecutter.main import cookiecutter

from tests.combinations import ROOT


def bake(output_dir, template=ROOT, **answers):
    """Render the template without prompts into output_dir; return the project directory."""
    return Path(cookiecutter(str(template), no_input=True, extra_context=answers, output_dir=str(output_dir)))
