"""The only home of boto3 and HTTP clients, with in-memory fakes beside the real adapters."""
