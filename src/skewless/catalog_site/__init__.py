"""The static catalog site of ``skewless docs`` (docs/catalog.md).

:mod:`.model` turns what was read into page models (pure), :mod:`.plots` draws the per-feature
figures as inline SVG, :mod:`.render` writes HTML (pure), :mod:`.gather` does the reading and
writing.
"""
