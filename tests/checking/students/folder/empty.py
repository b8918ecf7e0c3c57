"""A submission with none of the pieces."""

answer = 42
