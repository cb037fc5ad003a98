"""Offline evaluation of editors: metrics (metrics.py), the lifelong protocol (protocol.py) and
reports (report.py). The worker never imports this package; `factpatch eval` does.

Modules need torch; nothing is imported here so that `import editing.eval` stays cheap.
"""
