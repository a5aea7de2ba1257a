"""Errors a config provider raises to refuse a stream, mapped by the server to gRPC statuses."""


class InvalidNode(ValueError):
    """The node in a stream's first request cannot be served (bad id, missing metadata).

    The server answers with INVALID_ARGUMENT carrying this message and closes the stream.
    """
