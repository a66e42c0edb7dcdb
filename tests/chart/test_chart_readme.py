"""The chart README's values table is generated from values.yaml and must not drift."""

from __future__ import annotations

import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import chart_readme  # noqa: E402


def test_committed_readme_matches_values_yaml():
    current = (chart_readme.CHART / "README.md").read_text()
    wanted = chart_readme.readme(current, (chart_readme.CHART / "values.yaml").read_text())
    assert current == wanted, "charts/kserve-keda-webhook/README.md is out of date: run scripts/chart-readme"


def test_every_top_level_key_has_a_row():
    import yaml

    text = (chart_readme.CHART / "values.yaml").read_text()
    table = chart_readme.table(text)
    for key in yaml.safe_load(text):
        assert f"| `{key}" in table, key


SAMPLE = """\
# Section comment, not a description.
a:
  # -- First line
  #    continued.
  # -- Second choice.
  mode: x
  nested:
    leaf: 1
  # -- A documented map is one row.
  map:
    k: v
  list:
    - name: n
      # -- inside a list item: not a key of values
      inner: 2
# -- Pipes | are escaped.
b: "p|q"
text: |
  looks: like a key
"""


def test_descriptions_paths_and_defaults():
    rows = {k: (v, d) for k, v, d in chart_readme.rows(
        __import__("yaml").safe_load(SAMPLE), chart_readme.comments(SAMPLE))}
    assert rows["a.mode"] == ("x", "First line continued.<br>Second choice.")
    assert rows["a.nested.leaf"] == (1, "")
    assert rows["a.map"] == ({"k": "v"}, "A documented map is one row.")
    assert rows["a.list"] == ([{"name": "n", "inner": 2}], "")
    assert "a.map.k" not in rows and "text.looks" not in rows
    table = chart_readme.table(SAMPLE)
    assert '| `b` | `"p\\|q"` | Pipes \\| are escaped. |' in table


def test_a_changed_comment_changes_the_readme():
    current = (chart_readme.CHART / "README.md").read_text()
    values = (chart_readme.CHART / "values.yaml").read_text()
    edited = values.replace("# -- Webhook replicas.", "# -- Replicas of the webhook.", 1)
    assert edited != values
    assert chart_readme.readme(current, edited) != current
