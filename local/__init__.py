"""The local stack and the client: run the Signer on one machine (never shipped in the layer)."""
