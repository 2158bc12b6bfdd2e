"""The run's report: lines saying which image mode ran, what was real and what the fixtures changed,
printed under "image mode" at the end of the run (tests/conftest.py pytest_terminal_summary)."""


def add_to_report(config, lines):
    """Append lines to the run's report (config: the pytest config)."""
    config._lhd_mode_report = [*getattr(config, "_lhd_mode_report", []), *lines]
