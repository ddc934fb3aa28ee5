"""What the docs tell a user to type still exists: each config's docstring
gives its command, hardware and expected result, every --config.key= that a
doc or recipe names is a key of the config it reaches, and every pj.name the
README calls is in the library."""

import ast
import glob
import os
import re

import pytest

import pixelcnn_jax as pj
from pixelcnn_jax import config_base
from conftest import REPO, load_config

CONFIGS = sorted(os.path.basename(p) for p in glob.glob(os.path.join(REPO, "configs",
                                                                      "*.py")))
# What a user reads and copies; RESULTS.md is a lab notebook, whose old
# commands may name keys that have since gone.
DOCS = ["README.md", "launch/README.md", *sorted(
    os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "experiments", "*.sh")))]


def _docstring(name: str) -> str:
  with open(os.path.join(REPO, "configs", name)) as f:
    return ast.get_docstring(ast.parse(f.read()))


def _missing_keys(text: str, config) -> list[str]:
  missing = []
  for key in sorted(set(re.findall(r"--config\.([\w.]+)=", text)) - {"key"}):
    node = config
    try:
      for part in key.split("."):
        node = node[part]
    except (KeyError, TypeError):
      missing.append(key)
  return missing


@pytest.mark.parametrize("name", CONFIGS)
def test_each_config_says_how_to_run_it_and_what_to_expect(name):
  doc = _docstring(name)
  for field in ("Command:", "Hardware:", "Expected:"):
    assert field in doc, (name, field)
  assert f"--config=configs/{name}" in doc
  assert _missing_keys(doc, load_config(name, None)) == []


@pytest.mark.parametrize("path", DOCS)
def test_every_config_key_a_doc_names_exists(path):
  with open(os.path.join(REPO, path)) as f:
    text = f.read()
  assert _missing_keys(text, config_base.base()) == [], path  # Every config's keys.


def test_every_library_name_the_readme_calls_exists():
  with open(os.path.join(REPO, "README.md")) as f:
    names = set(re.findall(r"\bpj\.([A-Za-z_][\w.]*\w)", f.read()))
  missing = []
  for name in sorted(names):
    node = pj
    try:
      for part in name.split("."):
        node = getattr(node, part)
    except AttributeError:
      missing.append(name)
  assert len(names) > 10 and missing == []
