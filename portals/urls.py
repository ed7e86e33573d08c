from django.urls import path

from portals import views

app_name = "portals"
urlpatterns = [
    path("install/", views.install, name="install"),
    path("app/", views.app, name="app"),
    path("events/", views.events, name="events"),
]
