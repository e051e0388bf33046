"""Position-keeping YAML loading: lines per key path, duplicate keys, merge keys, syntax errors."""

from __future__ import annotations

import textwrap

from skewless.errors import SpecProblem
from skewless.spec.yaml_source import LocatedDocument, format_path, load_documents


def load(text: str) -> tuple[list[LocatedDocument], list[SpecProblem]]:
    return load_documents(textwrap.dedent(text), "f.yaml")


def test_lines_of_key_paths_across_documents() -> None:
    docs, problems = load(
        """\
        # comment
        view:
          name: v
          features:
            - {name: a, window: 7d}
            - name: b
              window: 30d
        ---
        entity:
          name: e
        """
    )
    assert problems == []
    first, second = docs
    assert first.data["view"]["features"][1] == {"name": "b", "window": "30d"}
    assert first.line_of(("view",)) == 2
    assert first.line_of(("view", "name")) == 3
    assert first.line_of(("view", "features", 0)) == 5
    assert first.line_of(("view", "features", 0, "window")) == 5
    assert first.line_of(("view", "features", 1, "window")) == 7
    # A path that does not exist falls back to its nearest existing parent.
    assert first.line_of(("view", "features", 1, "column")) == 6
    assert first.line_of(("view", "ttl")) == 2
    assert second.start_line == 9
    assert second.line_of(("entity", "name")) == 10
    assert second.problem(("entity", "join_keys"), "m").line == 9


def test_format_path() -> None:
    assert format_path(("view", "features", 2, "window")) == "view.features[2].window"
    assert format_path(("entity", "join_keys", "id")) == "entity.join_keys.id"
    assert format_path(()) == ""


def test_scalars_are_typed_like_safe_load() -> None:
    docs, _ = load("a: 7\nb: '7'\nc: null\nd: true\ne: 1.5\nf: 7d\n")
    assert docs[0].data == {"a": 7, "b": "7", "c": None, "d": True, "e": 1.5, "f": "7d"}


def test_duplicate_keys_are_reported_with_both_lines() -> None:
    docs, problems = load(
        """\
        view:
          name: a
          ttl: 1d
          name: b
        """
    )
    assert [str(p) for p in problems] == ["f.yaml:4: view.name: duplicate key (first defined on line 2)"]
    assert docs[0].data == {"view": {"name": "a", "ttl": "1d"}}
    assert docs[0].line_of(("view", "name")) == 2


def test_merged_keys_yield_to_explicit_ones_but_explicit_duplicates_do_not() -> None:
    docs, problems = load(
        """\
        items:
          - &base {function: count, window: 7d}
          - <<: *base
            window: 30d
          - <<: *base
            window: 1d
            window: 2d
        """
    )
    assert [str(p) for p in problems] == [
        "f.yaml:7: items[2].window: duplicate key (first defined on line 6)"
    ]
    items = docs[0].data["items"]
    assert items[1] == {"function": "count", "window": "30d"}
    assert items[2] == {"function": "count", "window": "1d"}
    # The overriding key's line, not the anchor's.
    assert docs[0].line_of(("items", 1, "window")) == 4
    assert docs[0].line_of(("items", 1, "function")) == 2


def test_an_alias_of_a_mapping_with_a_merge_key_is_no_duplicate() -> None:
    _, problems = load(
        """\
        items:
          - &base {function: count, window: 7d}
          - &child {<<: *base, window: 30d}
          - *child
        """
    )
    assert problems == []


def test_syntax_error_keeps_the_documents_before_it() -> None:
    docs, problems = load(
        """\
        entity:
          name: a
        ---
        entity:
          name: [b
        """
    )
    assert [d.data for d in docs] == [{"entity": {"name": "a"}}]
    assert len(problems) == 1
    assert problems[0].message.startswith("invalid YAML:")


def test_unclosed_quote_points_into_the_file_and_names_its_start() -> None:
    text = "entity:\n  name: 'abc\n  join_keys: {k: string}\n"
    _, problems = load_documents(text, "f.yaml")
    (problem,) = problems
    assert problem.line == 3  # the end of the stream, clamped to the file's last line
    assert "quoted scalar that starts on line 2" in problem.message


def test_empty_documents_are_skipped() -> None:
    docs, problems = load("# only a comment\n---\n---\nentity: {name: a}\n")
    assert problems == []
    assert [d.data for d in docs] == [{"entity": {"name": "a"}}]
    assert docs[0].start_line == 4


def test_trailing_separator_and_commented_out_documents_are_not_documents() -> None:
    docs, problems = load("entity: {name: a}\n---\n# entity: {name: b}\n---\nentity: {name: c}\n---\n")
    assert problems == []
    assert [d.data for d in docs] == [{"entity": {"name": "a"}}, {"entity": {"name": "c"}}]
