import pytest

from librobot.core.errors import ConfigError, DuplicateComponentError, UnknownComponentError
from librobot.core.registry import Registry, get_registry


class Widget:
    """A widget for tests."""

    def __init__(self, size: int = 1, color: str = "red") -> None:
        self.size, self.color = size, color


def make_registry() -> Registry:
    reg = Registry("testcat")
    reg.register("so100_arm", aliases=["so100", "arm-100"])(Widget)
    return reg


def test_aliases_and_name_folding_resolve_to_one_entry():
    reg = make_registry()
    assert reg.get("so100_arm") is Widget
    assert reg.get("SO100-Arm") is Widget  # case and -/_ folded
    assert reg.get("so100") is Widget
    assert reg.get("arm_100") is Widget
    assert reg.canonical("arm-100") == "so100_arm"
    assert reg.list() == ["so100_arm"]
    assert reg.list(with_aliases=True) == ["arm-100", "so100", "so100_arm"]
    assert "so100" in reg and "so101" not in reg
    assert reg.entry("so100").doc == "A widget for tests."


def test_create_passes_arguments_and_names_unknown_ones():
    reg = make_registry()
    widget = reg.create("so100", size=3)
    assert (widget.size, widget.color) == (3, "red")
    with pytest.raises(ConfigError, match=r"cannot create testcat 'so100_arm'.*'colour'.*accepts: size, color"):
        reg.create("so100", colour="blue")


def test_duplicate_name_and_alias_are_refused():
    reg = make_registry()

    class Other:
        pass

    with pytest.raises(DuplicateComponentError, match="already registered"):
        reg.register("so100-arm")(Other)  # same name after folding
    with pytest.raises(DuplicateComponentError, match="already an alias"):
        reg.register("so100")(Other)
    with pytest.raises(DuplicateComponentError, match="already belongs to"):
        reg.register("other", aliases=["arm_100"])(Other)
    reg.register("so100_arm")(Widget)  # re-registering the same object (a re-import) is fine
    assert reg.get("so100_arm") is Widget


def test_unknown_name_lists_close_matches():
    reg = make_registry()
    reg.register("wheel_loader", aliases=["loader"])(Widget.__class__)
    with pytest.raises(UnknownComponentError) as info:
        reg.get("so10_arm")
    message = str(info.value)
    assert "unknown testcat 'so10_arm'" in message and "Did you mean: so100_arm" in message
    with pytest.raises(UnknownComponentError, match=r"Did you mean: .*loader"):
        reg.get("loadr")
    assert isinstance(info.value, KeyError)


def test_empty_registry_says_what_to_install():
    with pytest.raises(UnknownComponentError, match="No nothing is registered at all"):
        Registry("nothing").get("x")


def test_lazy_entry_imports_only_when_used(tmp_path, monkeypatch):
    module = tmp_path / "lazy_widget_mod.py"
    module.write_text("LOADED = True\nclass Lazy:\n    def __init__(self, n=2):\n        self.n = n\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import sys

    reg = Registry("lazytest")
    reg.register_lazy("lazy-one", "lazy_widget_mod:Lazy", aliases=["l1"], doc="lazily loaded")
    assert reg.list() == ["lazy-one"]
    assert "lazy_widget_mod" not in sys.modules
    assert reg.create("l1", n=5).n == 5
    assert "lazy_widget_mod" in sys.modules
    assert reg.entry("lazy-one").loaded


def test_decorator_completes_a_lazy_entry_instead_of_clashing():
    reg = Registry("fill")
    reg.register_lazy("widget", f"{__name__}:Widget")
    reg.register("widget")(Widget)  # what the module's own decorator would do on import
    assert reg.get("widget") is Widget
    with pytest.raises(DuplicateComponentError):
        reg.register_lazy("widget", "elsewhere:Widget")


def test_lazy_entry_with_bad_target_names_module_and_attribute():
    reg = Registry("bad")
    reg.register_lazy("ghost", "librobot.core.registry:NoSuchThing")
    with pytest.raises(ImportError, match="has no attribute 'NoSuchThing'"):
        reg.get("ghost")
    reg.register_lazy("missing", "no_such_module_xyz:Thing")
    with pytest.raises(ImportError, match="no_such_module_xyz"):
        reg.get("missing")


def test_unknown_category_suggests_close_one():
    with pytest.raises(UnknownComponentError, match="Did you mean: action_head"):
        get_registry("action_heads")
    assert get_registry("action-head") is get_registry("action_head")
