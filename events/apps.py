from django.apps import AppConfig


class EventsConfig(AppConfig):
    name = "events"
    verbose_name = "Bitrix24 events"

    def ready(self):
        from django.core.signals import request_finished, request_started

        from events import binds as event_binds
        from events import dashboard
        from events import handlers, inbox, queue  # noqa: F401 - handlers register themselves
        from portals import binds, event_receivers

        event_receivers.receiver_register(accepts=inbox.accepts, receive=inbox.receive)
        binds.bind_provider_register(name="events", provider=event_binds.event_bind_commands)
        dashboard.register()
        request_started.connect(queue.request_started, dispatch_uid="events.queue.request_started")
        request_finished.connect(queue.request_finished, dispatch_uid="events.queue.request_finished")
