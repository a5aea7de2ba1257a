"""Where galley's configuration comes from: each source feeds the store under its own origins.

A source validates what it reads before handing it to `galley.store.ConfigStore`, so the store
only ever holds accepted resources, and it keeps the last accepted content of anything that
became invalid.
"""
