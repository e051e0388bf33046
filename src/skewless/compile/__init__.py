"""Compile a tree of feature definitions into the registry manifest."""

from skewless.compile.compiler import compile_objects, compile_tree

__all__ = ["compile_objects", "compile_tree"]
