"""YAML loading that remembers where each mapping came from, and refuses duplicate keys, alias bombs and !vault."""
from __future__ import annotations

from pathlib import Path

import yaml

from provision.values import LocatedStr


class Located(dict):
    """A mapping from a YAML file that knows its file and 1-based line."""

    file: str = "?"
    line: int = 0
    key_lines: dict = {}

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


class _LineLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """SafeLoader (libyaml's when present: several times faster) whose mappings are `Located` dicts."""


# A document may hold at most this many nodes once its aliases are expanded: far above any real
# inventory or role, far below the billions a "billion laughs" bomb asks for.
MAX_EXPANDED_NODES = 100_000

VAULT_UNSUPPORTED = ("Ansible Vault (!vault) is not supported: set the variable to {secret_env: NAME} "
                     "or {secret_file: PATH} (a file only you can read), and provision reads it on this machine")


def _construct_located(loader: _LineLoader, node: yaml.MappingNode) -> Located:
    first_line: dict = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            seen = first_line.get(key)
        except TypeError:  # an unhashable key: construct_pairs below refuses it
            continue
        if seen is not None:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first at line {seen}): YAML keeps only one of them",
                key_node.start_mark)
        first_line[key] = key_node.start_mark.line + 1
    loader.flatten_mapping(node)
    mapping = Located(loader.construct_pairs(node, deep=True))
    mapping.file = loader.name
    mapping.line = node.start_mark.line + 1
    mapping.key_lines = first_line
    return mapping


def _refuse_vault(loader: _LineLoader, node: yaml.Node):
    raise yaml.constructor.ConstructorError(None, None, VAULT_UNSUPPORTED, node.start_mark)


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_located)
def _construct_str(loader: _LineLoader, node: yaml.ScalarNode) -> LocatedStr:
    return LocatedStr(loader.construct_scalar(node), f"{loader.name}:{node.start_mark.line + 1}")


_LineLoader.add_constructor("tag:yaml.org,2002:str", _construct_str)
_LineLoader.add_constructor("!vault", _refuse_vault)
_LineLoader.add_constructor("!vault-encrypted", _refuse_vault)


def _expanded_size(node: yaml.Node, sizes: dict) -> int:
    """How many nodes `node` stands for with every alias expanded (each distinct node counted once)."""
    known = sizes.get(id(node))
    if known is not None:
        return known
    sizes[id(node)] = 1  # a recursive alias counts once, and construction refuses nothing for it
    if isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded_size(child, sizes) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        size = 1 + sum(_expanded_size(k, sizes) + _expanded_size(v, sizes) for k, v in node.value)
    else:
        size = 1
    sizes[id(node)] = size
    return size


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
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}) > MAX_EXPANDED_NODES:
            raise error(f"{name}: refused: its aliases expand to more than {MAX_EXPANDED_NODES:,} values "
                        f"(an alias bomb?)")
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
        kind = "" if isinstance(exc, yaml.constructor.ConstructorError) else "malformed YAML: "
        raise error(f"{where}: {kind}{exc.problem or exc.context}") from None
    except RecursionError:
        raise error(f"{name}: refused: nested too deeply") from None
    finally:
        loader.dispose()
