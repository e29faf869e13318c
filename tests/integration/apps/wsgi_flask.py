"""A real Flask app, served unmodified (tests/integration/test_wsgi_frameworks.py).

Wrapped in wsgiref.validate.validator, warnings as errors. Run with
VIRTUAL_ENV=.venv-apps (tests/requirements-apps.txt). Routes:
    /                    text
    /items/<id>?q=&tag=  JSON of the path and query arguments
    /form        POST    urlencoded form fields as JSON
    /json        POST    the JSON body back
    /cookie/set          sets two cookies
    /cookie/get          the cookies sent, as JSON
    /upload      POST    multipart: the file's name, size and sha256, and a field
    /stream?n=           a streamed (generator) response of n lines
    /boom                raises: Flask's 500 page
    /redirect            302 to /
    /url                 request.url and friends as Flask computes them
    anything else        Flask's 404 page
"""

import hashlib
import warnings

warnings.simplefilter("error")

from wsgiref.validate import validator  # noqa: E402

from flask import (Flask, Response, jsonify, make_response, redirect, request,  # noqa: E402
                   stream_with_context, url_for)

flask_app = Flask(__name__)


@flask_app.get("/")
def index():
    return "Hello from Flask\n"


@flask_app.get("/items/<int:item_id>")
def item(item_id):
    return jsonify(id=item_id, q=request.args.get("q"), tags=request.args.getlist("tag"))


@flask_app.post("/form")
def form():
    return jsonify(name=request.form["name"], colors=request.form.getlist("color"))


@flask_app.post("/json")
def json_echo():
    return jsonify(got=request.get_json(), type=request.content_type)


@flask_app.get("/cookie/set")
def cookie_set():
    resp = make_response("set\n")
    resp.set_cookie("flavour", "oatmeal raisin")
    resp.set_cookie("second", "2")
    return resp


@flask_app.get("/cookie/get")
def cookie_get():
    return jsonify(dict(request.cookies))


@flask_app.post("/upload")
def upload():
    f = request.files["file"]
    data = f.read()
    return jsonify(filename=f.filename, size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                   note=request.form.get("note"))


@flask_app.get("/stream")
def stream():
    n = request.args.get("n", 5, type=int)

    def lines():
        for i in range(n):
            yield f"line {i}\n"
    return Response(stream_with_context(lines()), mimetype="text/plain")


@flask_app.get("/boom")
def boom():
    raise RuntimeError("deliberate Flask failure")


@flask_app.get("/redirect")
def go_home():
    return redirect(url_for("index"))


@flask_app.get("/url")
def url():
    return jsonify(url=request.url, root=request.root_url, path=request.path,
                   script_root=request.script_root, remote=request.remote_addr,
                   scheme=request.scheme, home=url_for("index"))


_checked = validator(flask_app)


def app(environ, start_response):
    return _checked(environ, start_response)
