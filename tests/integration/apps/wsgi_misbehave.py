"""A WSGI app that breaks PEP 3333 on purpose (tests/integration/test_wsgi.py).

Not wrapped in wsgiref.validate: the validator would stop each of these
mistakes with its own AssertionError before it reached the server, and the
point here is what ringmaster does with them. The same goes for /plain-list:
the validator hands the server an iterator in place of the app's list, which
hides the list's known length. Warnings are errors all the same.

Routes:
    /crlf-header       a header value with CR LF (a response-splitting attempt)
    /bad-name          a header name that is not a token
    /bad-status        the status "OK" (no code)
    /latin1            a header value outside latin-1
    /str-item          a str in the iterable
    /str-result        returns a str instead of an iterable
    /none-result       returns None
    /no-start          returns a body without calling start_response
    /twice             start_response twice without exc_info
    /hop-by-hop        Transfer-Encoding and Connection: close from the app
    /close-raises      a fine response whose close() raises
    /write-then-list   write() a piece, then return a list
    /status-only-code  the status "200" without a reason phrase
    /plain-list        a correct response: a list of three pieces, no Content-Length
"""

import warnings

warnings.simplefilter("error")


class CloseRaises:
    def __iter__(self):
        return iter([b"body despite close\n"])

    def close(self):
        raise RuntimeError("deliberate: close() fails")


def app(environ, start_response):
    path = environ["PATH_INFO"]
    text = [("Content-Type", "text/plain")]

    if path == "/crlf-header":
        start_response("200 OK", text + [("X-Bad", "a\r\nInjected: yes")])
        return [b"should not be sent\n"]
    if path == "/bad-name":
        start_response("200 OK", text + [("Bad Name", "x")])
        return [b"should not be sent\n"]
    if path == "/bad-status":
        start_response("OK", text)
        return [b"should not be sent\n"]
    if path == "/latin1":
        start_response("200 OK", text + [("X-Cup", "\u2615")])
        return [b"should not be sent\n"]
    if path == "/str-item":
        start_response("200 OK", text)
        return ["a str, not bytes"]
    if path == "/str-result":
        start_response("200 OK", text)
        return "a str instead of an iterable"
    if path == "/none-result":
        start_response("200 OK", text)
        return None
    if path == "/no-start":
        return [b"no start_response\n"]
    if path == "/twice":
        start_response("200 OK", text)
        start_response("201 Created", text)
        return [b"should not be sent\n"]
    if path == "/hop-by-hop":
        start_response("200 OK", text + [("Transfer-Encoding", "chunked"),
                                         ("Connection", "close"), ("Content-Length", "6")])
        return [b"hello\n"]
    if path == "/close-raises":
        start_response("200 OK", text + [("Content-Length", "19")])
        return CloseRaises()
    if path == "/write-then-list":
        write = start_response("200 OK", text)
        write(b"written,")
        return [b"returned"]
    if path == "/plain-list":
        start_response("200 OK", text)
        return [b"one,", b"two,", b"three"]
    if path == "/status-only-code":
        start_response("200", text + [("Content-Length", "3")])
        return [b"ok\n"]
    start_response("404 Not Found", text)
    return [b"no such route\n"]
