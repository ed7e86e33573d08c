from django.urls import path

from sandbox import views

app_name = "sandbox"
urlpatterns = [
    path("", views.portal, name="portal"),
    path("app/", views.app_page, name="app"),
    path("tasks/<int:task_id>/", views.task_card, name="task"),
    path("tasks/<int:task_id>/state", views.task_state, name="task_state"),
    path("deals/<int:deal_id>/", views.deal_card, name="deal"),
    path("controls/<slug:name>/", views.control, name="control"),
]
