from django.urls import path

from placements import views

app_name = "placements"
urlpatterns = [
    path("handler/", views.handler, name="handler"),
    path("action/", views.action, name="action"),
]
