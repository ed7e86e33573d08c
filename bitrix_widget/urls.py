from django.contrib import admin
from django.urls import include, path

from bitrix_widget.views import healthz

urlpatterns = [
    path("portals/", include("portals.urls")),
    path("placements/", include("placements.urls")),
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
]
