"""The mesh's own gRPC APIs: .proto sources and the Python generated from them.

Generated modules sit next to their sources and are committed, so a checkout imports them
without a build step; `make protos` regenerates them and a unit test keeps them in step.
"""
