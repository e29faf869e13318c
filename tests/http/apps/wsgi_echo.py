"""A WSGI app for tests/http/test_http11_details.py.

GET: 200 and JSON of what the app saw (PATH_INFO, SCRIPT_NAME, method), sent
as a list of one bytes object (so the server knows its length). HEAD returns
[] without a Content-Length, as Werkzeug (every Flask route) does; HEAD
/declared gives the GET's Content-Length itself.
"""

import json


def app(environ, start_response):
    info = json.dumps({
        "method": environ["REQUEST_METHOD"],
        "path": environ["PATH_INFO"],
        "script_name": environ["SCRIPT_NAME"],
    }).encode()
    if environ["REQUEST_METHOD"] == "HEAD":
        headers = [("Content-Type", "application/json")]
        if environ["PATH_INFO"] == "/declared":
            headers.append(("Content-Length", "42"))
        start_response("200 OK", headers)
        return []
    start_response("200 OK", [("Content-Type", "application/json")])
    return [info]
