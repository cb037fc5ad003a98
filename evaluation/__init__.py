"""Offline evaluation of editors: metrics (metrics.py), the lifelong protocol (lifelong.py),
batched scoring (scoring.py) and result files (results.py). The workers never import this
package; `factpatch eval` does.

Modules need torch; nothing is imported here so that `import evaluation` stays cheap.
"""
