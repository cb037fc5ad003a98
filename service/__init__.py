"""factpatch's HTTP front end (FastAPI). Imports no torch: build the app with `service.main.create_app`."""
