"""The admin site: named after the app, and opening on the fleet at a glance (portals.dashboard)."""
from django.contrib import admin
from django.contrib.admin.apps import AdminConfig

APP_NAME = "Bitrix24 widget backend"


class FleetAdminSite(admin.AdminSite):
    site_header = f"{APP_NAME}: operators"
    site_title = f"{APP_NAME} admin"
    index_title = "Fleet at a glance"
    index_template = "admin/fleet_index.html"
    # The portal list needs the room at 1440 px: the breadcrumbs and the home page lead everywhere.
    enable_nav_sidebar = False

    def index(self, request, extra_context=None):
        from portals import dashboard  # not at import: INSTALLED_APPS loads this module before models

        return super().index(request, {"fleet": dashboard.fleet_at_a_glance(), **(extra_context or {})})


class FleetAdminConfig(AdminConfig):
    """INSTALLED_APPS names this instead of django.contrib.admin, so admin.site is the site above."""

    default_site = "portals.admin_site.FleetAdminSite"
