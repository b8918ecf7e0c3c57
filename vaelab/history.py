"""A run's per-epoch metrics as a notebook reads them: by epoch, by column, or Keras' way."""


class History:
    """Per-epoch metrics: `history[3]` is the row of epoch 4, `history["test_elbo"]` a column.

    Examples:
        >>> run.history["test_elbo"]     # a column
        >>> run.history[0]               # the row of epoch 1
        >>> run.history.history["test_elbo"], run.history.epoch  # as Keras keeps them
    """

    def __init__(self, rows: list[dict]):
        self.rows = rows

    @property
    def columns(self) -> list[str]:
        return list(self.rows[0]) if self.rows else []

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key):
        if isinstance(key, str):
            if key not in self.columns:
                raise KeyError(f"no column {key!r}; the columns are {', '.join(self.columns)}")
            return [r[key] for r in self.rows]
        return self.rows[key]

    def __iter__(self):
        return iter(self.rows)

    def __repr__(self) -> str:
        return f"History({len(self)} epochs: {', '.join(self.columns)})"

    def _repr_html_(self) -> str:
        from vaelab.report.pages import table  # HTML helpers, loaded when a notebook shows it

        return table(self.columns, [list(r.values()) for r in self.rows])

    @property
    def history(self) -> dict[str, list]:
        """{column: [a value per epoch]}, as Keras' History.history holds them."""
        return {c: [r[c] for r in self.rows] for c in self.columns if c != "epoch"}

    @property
    def epoch(self) -> list[int]:
        """The epochs' numbers (from 1), as Keras' History.epoch (from 0) lists its own."""
        return [r["epoch"] for r in self.rows]

    def to_pandas(self):
        """A pandas DataFrame of the rows (pandas is not a dependency of vaelab)."""
        import pandas

        return pandas.DataFrame(self.rows).set_index("epoch")
