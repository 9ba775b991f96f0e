"""One module per Lambda function; each exposes the use case its handler calls."""
