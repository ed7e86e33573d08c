from django.apps import AppConfig


class PlacementsConfig(AppConfig):
    name = "placements"
    verbose_name = "Widget placements"

    def ready(self):
        from django.core import checks

        from placements import dashboard, operations, registry
        from portals import binds
        from portals.models import Portal
        from portals.signals import portal_uninstalled

        registry.autodiscover()
        checks.register(registry.check_served_placements, "placements")
        binds.bind_provider_register(name="placements", provider=operations.placement_bind_commands)
        dashboard.register()
        binds.feature_provider_register(name="placements", provider=operations.placement_features)
        portal_uninstalled.connect(
            operations.invocations_purge_on_uninstall, sender=Portal, dispatch_uid="placements.purge_invocations"
        )
