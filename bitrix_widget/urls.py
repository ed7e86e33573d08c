from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from bitrix_widget.views import healthz, home, metrics_view

urlpatterns = [
    path("", home, name="home"),
    path("portals/", include("portals.urls")),
    path("placements/", include("placements.urls")),
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
]
if settings.SANDBOX:  # development only: DEBUG on and no Bitrix24 credentials (sandbox/)
    urlpatterns.append(path("sandbox/", include("sandbox.urls")))

# Error answers that say what was wrong (JSON for scripts, a small page otherwise).
handler400 = "bitrix_widget.errors.handler400"
handler403 = "bitrix_widget.errors.handler403"
handler404 = "bitrix_widget.errors.handler404"
handler500 = "bitrix_widget.errors.handler500"
