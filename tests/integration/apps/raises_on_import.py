"""An app module whose import raises: the server must say so and exit."""

raise RuntimeError("raises_on_import refuses to be imported")


def app(request):
    return b"never served\n"
