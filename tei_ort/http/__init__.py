"""The HTTP front end (Starlette): TEI's routes as thin adapters over the shared handlers."""
