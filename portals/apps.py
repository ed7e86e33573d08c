from django.apps import AppConfig


class PortalsConfig(AppConfig):
    name = "portals"
    verbose_name = "Bitrix24 portals"

    def ready(self):
        from portals import binds, dashboard, services

        binds.bind_provider_register(name="portals.lifecycle", provider=services.lifecycle_bind_commands)
        dashboard.register_portal_charts_and_checks()
