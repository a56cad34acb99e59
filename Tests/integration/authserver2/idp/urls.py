from django.http import HttpResponse
from django.urls import include, path
from oauth2_provider import urls as oauth2_urls


def callback(request):
    """The client's redirect_uri: the page the browser lands on after the authorization server (the
    client's own handling of code, state or error is modelled by the test)."""
    return HttpResponse("<html><head><title>Example app</title></head><body>callback received</body></html>")


urlpatterns = [
    path("accounts/", include("django.contrib.auth.urls")),
    path("o/", include(oauth2_urls)),
    path("cb", callback),
]
