"""The only home of boto3 and HTTP clients, with in-memory fakes beside the real adapters."""

__all__: list[str] = []  # a namespace: each module lists its own
