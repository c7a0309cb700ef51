"""The gRPC front end (TEI's ``tei.v1``): thin adapters over the shared handlers."""
