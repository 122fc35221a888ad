"""Operations: each compiles to a guarded shell step (check, apply)."""
