"""The ops console's static files (index.html, app.js, style.css), served by `service.routers.console`."""
