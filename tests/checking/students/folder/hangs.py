"""A submission whose top level never finishes."""

while True:
    pass
