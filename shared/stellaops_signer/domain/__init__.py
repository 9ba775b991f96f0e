"""Pure domain: no boto3, no environment, no clock. Time and keys are inputs."""

__all__: list[str] = []  # a namespace: each module lists its own
