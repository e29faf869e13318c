"""An app file that cannot be compiled: the server must say so and exit."""


def app(request)  # <- missing colon, deliberately
    return b"never served\n"
