"""tei-ort's version, and the TEI release whose API it serves (the one place each is written;
pyproject reads VERSION from here)."""

VERSION = "0.1.0"

#: the Text Embeddings Inference release tei-ort answers as: /info's ``version``, the
#: OpenAPI document's version and ``--version`` (clients gate features on it)
TEI_VERSION = "1.9.3"
