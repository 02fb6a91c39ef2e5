"""Events whose classes live in ``__main__`` (the script that was run) are refused by the
pickle serializer at the first persist, since no other program could decode them;
cloudpickle, chosen knowingly, stores them by value and they stay readable."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import attrs
import pytest

from actors.persistence import (
    CloudpickleSerializer,
    EventRejected,
    PickleSerializer,
    Serialization,
)


@attrs.frozen
class Wrapper:
    inner: object


@pytest.fixture
def main_class(monkeypatch: pytest.MonkeyPatch) -> type:
    """A class that pickle finds as ``__main__.MainEvent``, as if a script defined it."""

    @attrs.frozen
    class MainEvent:
        amount: int

    MainEvent.__module__ = "__main__"
    MainEvent.__qualname__ = "MainEvent"
    monkeypatch.setattr(sys.modules["__main__"], "MainEvent", MainEvent, raising=False)
    return MainEvent


def test_pickle_refuses_an_event_of_a_main_class(main_class: type) -> None:
    with pytest.raises(EventRejected) as caught:
        PickleSerializer().to_binary(main_class(1))
    assert str(caught.value) == (
        "cannot serialize an event of type __main__.MainEvent with serializer 'pickle': "
        "its class is defined in the script run as __main__, which no other program can "
        "import (`python -m actors.persistence`, another script), so they could not decode "
        "it. Move the class into a module that the script imports, or choose the "
        'cloudpickle serializer knowingly (`serializer = "cloudpickle"` on the actor): it '
        "stores such classes by value"
    )


def test_pickle_refuses_an_event_that_refers_to_a_main_class(main_class: type) -> None:
    with pytest.raises(EventRejected, match=r"it refers to __main__\.MainEvent, defined in"):
        Serialization().serialize(Wrapper([main_class(1), main_class(2)]))
    with pytest.raises(EventRejected, match=r"it refers to __main__\.MainEvent, defined in"):
        Serialization().serialize(Wrapper(main_class))  # the class itself


def test_the_text_main_in_an_event_is_fine() -> None:
    serializer, manifest, payload = Serialization().serialize(Wrapper("__main__"))
    assert b"__main__" in payload
    assert Serialization().deserialize(serializer, manifest, payload) == Wrapper("__main__")


def test_cloudpickle_stores_a_main_class_by_value(main_class: type) -> None:
    manifest, payload = CloudpickleSerializer().to_binary(main_class(3))
    assert manifest == "__main__.MainEvent"
    assert CloudpickleSerializer().from_binary(manifest, payload) == main_class(3)


SCRIPT = textwrap.dedent(
    """
    import sys
    from typing import Any

    import attrs
    import trio

    import actors
    from actors.persistence import (
        EventRejected, Persistence, PersistentActor, open_sqlite_journal,
    )


    @attrs.frozen
    class Deposited:
        amount: int


    class Account(PersistentActor):
        persistence_id = "acct"
        serializer = {serializer!r}

        def apply(self, event: Any) -> None:
            pass

        async def receive(self, message: Any) -> Any:
            try:
                await self.persist(Deposited(message))
            except EventRejected as error:
                return f"refused: {{error}}"
            return f"stored #{{self.last_seq}}"


    async def main() -> None:
        async with (
            open_sqlite_journal(sys.argv[1]) as journal,
            actors.open_system(extensions=[Persistence(journal)]) as system,
        ):
            print(await system.spawn(Account).ask(10))


    trio.run(main)
    """
)


def _run_script(tmp_path: Path, serializer: str | None) -> str:
    script = tmp_path / "script.py"
    script.write_text(SCRIPT.format(serializer=serializer))
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "j.db")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout


def _events(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            *(sys.executable, "-m", "actors.persistence"),
            *("--sqlite", str(tmp_path / "j.db"), "events", "acct"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_script_that_persists_a_main_class_is_refused_at_the_first_persist(
    tmp_path: Path,
) -> None:
    assert _run_script(tmp_path, None).startswith(
        "refused: cannot serialize an event of type __main__.Deposited with serializer "
        "'pickle': its class is defined in the script run as __main__"
    )
    result = _events(tmp_path)
    assert (result.returncode, result.stdout) == (1, "")
    assert "no events were ever stored for persistence id 'acct'" in result.stderr


def test_with_cloudpickle_another_program_decodes_them(tmp_path: Path) -> None:
    assert _run_script(tmp_path, "cloudpickle") == "stored #1\n"
    result = _events(tmp_path)
    assert (result.returncode, result.stderr) == (0, "")
    assert "serializer=cloudpickle  manifest=__main__.Deposited" in result.stdout
    assert result.stdout.rstrip().endswith("value=Deposited(amount=10)")
