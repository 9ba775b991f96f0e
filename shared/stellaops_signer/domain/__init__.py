"""Pure domain: no boto3, no environment, no clock. Time and keys are inputs."""
