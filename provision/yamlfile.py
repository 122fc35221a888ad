"""YAML loading that remembers where each mapping came from, for errors that name file and line."""
from __future__ import annotations

from pathlib import Path

import yaml


class Located(dict):
    """A mapping from a YAML file that knows its file and 1-based line."""

    file: str = "?"
    line: int = 0

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


class _LineLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """SafeLoader (libyaml's when present: several times faster) whose mappings are `Located` dicts."""


def _construct_located(loader: _LineLoader, node: yaml.MappingNode) -> Located:
    loader.flatten_mapping(node)
    mapping = Located(loader.construct_pairs(node, deep=True))
    mapping.file = loader.name
    mapping.line = node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_located)


def display_path(path: Path) -> str:
    """The path as a user should see it: relative to the working directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def load_yaml(path: Path, error: type[Exception]):
    """Parse one YAML file; a syntax error is raised as `error` naming file, line and column."""
    name = display_path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise error(f"{name}: cannot read: {exc.strerror}") from None
    return parse_yaml(text, name, error)


def parse_yaml(text: str, name: str, error: type[Exception]):
    """Parse YAML text whose mappings are `Located`; a syntax error names `name`, line and column."""
    loader = _LineLoader(text)
    loader.name = name
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
        raise error(f"{where}: malformed YAML: {exc.problem or exc.context}") from None
    finally:
        loader.dispose()
