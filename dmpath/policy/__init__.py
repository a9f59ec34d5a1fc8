"""Pure policies: decisions as functions of their inputs, no I/O."""
