"""The conformance rules: the real tools run on generated files, and the project's own checks, each returning
a list of problems (empty when clean)."""
