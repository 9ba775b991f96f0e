"""One module per Lambda function; each exposes the use case its handler calls."""

__all__: list[str] = []  # a namespace: each module lists its own
