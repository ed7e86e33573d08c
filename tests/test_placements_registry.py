"""The placement framework: B24_PLACEMENTS chooses what is served and bound; modules register."""
from django.core import management
from django.core.management.base import SystemCheckError
import pytest

from placements import operations, registry
from placements.kinds.tasks import TaskPlacement, TaskViewTopPanel


@pytest.fixture
def task_view_tab():
    class TaskViewTab(TaskPlacement):
        code = "TASK_VIEW_TAB"
        title = "Task tab"
        template = "placements/task_view_top_panel.html"

    registry.register(TaskViewTab)
    yield TaskViewTab
    registry.unregister("TASK_VIEW_TAB")


def test_task_placements_register_themselves_at_ready():
    assert registry.get("TASK_VIEW_TOP_PANEL") is TaskViewTopPanel


def test_a_registered_placement_not_in_b24_placements_is_neither_served_nor_bound(task_view_tab, settings):
    settings.B24_APP_BASE_URL = "https://app.example.com"
    settings.B24_PLACEMENTS = ["TASK_VIEW_TOP_PANEL"]
    assert registry.get("TASK_VIEW_TAB") is None
    assert list(operations.placement_bind_commands()) == ["placement_TASK_VIEW_TOP_PANEL"]
    settings.B24_PLACEMENTS = ["TASK_VIEW_TOP_PANEL", "task_view_tab"]
    assert registry.get("TASK_VIEW_TAB") is task_view_tab
    assert list(operations.placement_bind_commands()) == ["placement_TASK_VIEW_TOP_PANEL", "placement_TASK_VIEW_TAB"]


def test_unknown_code_in_b24_placements_fails_the_check(settings):
    settings.B24_PLACEMENTS = ["TASK_VIEW_TOP_PANEL", "NO_SUCH_PLACEMENT"]
    with pytest.raises(SystemCheckError, match="NO_SUCH_PLACEMENT"):
        management.call_command("check")


def test_a_placement_names_only_the_words_it_changes(task_view_tab):
    class Quiet(registry.Placement):
        words = {"title": "Quiet"}

    assert Quiet.words["title"] == "Quiet"
    assert Quiet.words["not_found_title"] == registry.Placement.words["not_found_title"]
    assert str(task_view_tab.words["not_found_title"]) == "Task not found"
