"""The worker agent: a self-contained, stdlib-only package.

It imports the user's handler and runs invocations sent over a unix socket.  It never imports
anything else from warmstart, so the folder can be bind-mounted into any image with a Python
3.9+ and started as ``python <folder>/__main__.py``.
"""
