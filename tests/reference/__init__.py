"""Plain-Python reference implementations of the rules in docs/semantics.md, which the Spark code is
compared against. They live with the tests: nothing in the library uses them."""
