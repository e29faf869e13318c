"""A real Django project in one file, served unmodified
(tests/integration/test_wsgi_frameworks.py).

Wrapped in wsgiref.validate.validator, warnings as errors. Run with
VIRTUAL_ENV=.venv-apps (tests/requirements-apps.txt). The routes mirror
wsgi_flask.py, plus /download (a FileResponse, which Django sends through
wsgi.file_wrapper).
"""

import hashlib
import json
import warnings

warnings.simplefilter("error")

from django.conf import settings  # noqa: E402

settings.configure(
    DEBUG=False,
    SECRET_KEY="ringmaster-tests-only-not-secret",
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=["django.middleware.common.CommonMiddleware"],
    INSTALLED_APPS=[],
    DATABASES={},
    USE_TZ=True,
)

import django  # noqa: E402

django.setup()

from wsgiref.validate import validator  # noqa: E402

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import (FileResponse, HttpResponse, HttpResponseRedirect,  # noqa: E402
                         JsonResponse, StreamingHttpResponse)
from django.urls import path  # noqa: E402
from django.views.decorators.csrf import csrf_exempt  # noqa: E402


def index(request):
    return HttpResponse("Hello from Django\n", content_type="text/plain")


def item(request, item_id):
    return JsonResponse({"id": item_id, "q": request.GET.get("q"),
                         "tags": request.GET.getlist("tag")})


@csrf_exempt
def form(request):
    return JsonResponse({"name": request.POST["name"], "colors": request.POST.getlist("color")})


@csrf_exempt
def json_echo(request):
    return JsonResponse({"got": json.loads(request.body), "type": request.content_type})


def cookie_set(request):
    resp = HttpResponse("set\n", content_type="text/plain")
    resp.set_cookie("flavour", "oatmeal raisin")
    resp.set_cookie("second", "2")
    return resp


def cookie_get(request):
    return JsonResponse(dict(request.COOKIES))


@csrf_exempt
def upload(request):
    f = request.FILES["file"]
    data = f.read()
    return JsonResponse({"filename": f.name, "size": len(data),
                         "sha256": hashlib.sha256(data).hexdigest(),
                         "note": request.POST.get("note")})


def stream(request):
    n = int(request.GET.get("n", 5))
    return StreamingHttpResponse((f"line {i}\n" for i in range(n)), content_type="text/plain")


def boom(request):
    raise RuntimeError("deliberate Django failure")


def go_home(request):
    return HttpResponseRedirect("/")


def url(request):
    return JsonResponse({"url": request.build_absolute_uri(), "path": request.path,
                         "path_info": request.path_info,
                         "script_name": request.META["SCRIPT_NAME"],
                         "remote": request.META.get("REMOTE_ADDR"), "scheme": request.scheme})


def download(request):
    return FileResponse(open(__file__, "rb"), as_attachment=True, filename="wsgi_django.py")


urlpatterns = [
    path("", index),
    path("items/<int:item_id>", item),
    path("form", form),
    path("json", json_echo),
    path("cookie/set", cookie_set),
    path("cookie/get", cookie_get),
    path("upload", upload),
    path("stream", stream),
    path("boom", boom),
    path("redirect", go_home),
    path("url", url),
    path("download", download),
]

_checked = validator(get_wsgi_application())


def app(environ, start_response):
    return _checked(environ, start_response)
