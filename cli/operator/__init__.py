"""The operator's command line over HTTP (`factpatch edits|facts|rollback|replay|revisions|model`).

An HTTP client only: it needs httpx and pydantic, never torch, and talks to the API named by
`FACTPATCH_URL` with the key in `FACTPATCH_API_KEY`.
"""
