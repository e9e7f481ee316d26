"""The gateway: SigV4, the AWS JSON wire protocol, routing to the owning service."""
