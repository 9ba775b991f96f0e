"""Stella Ops Signer: the domain, its ports, the AWS adapters and the use cases the Lambda functions call."""

__version__ = "0.1.0"
