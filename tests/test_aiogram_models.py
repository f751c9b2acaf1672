"""bot.aiogram_models: aiogram's types and methods, built on first use, are what aiogram builds.

Each side runs in a fresh interpreter (aiogram can be imported only once per process): one
imports aiogram as usual, the other through `import_aiogram()`; both then write the JSON schema
of every pydantic model in aiogram.types and aiogram.methods, and the two must be equal.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_SCHEMAS = textwrap.dedent(
    """
    import json, sys
    from pydantic import BaseModel
    if sys.argv[1] == "lazy":
        from bot.aiogram_models import import_aiogram
        import_aiogram()
    import aiogram.methods, aiogram.types
    # Before anything is validated: how many types are built already.
    built = [
        module.__name__ + "." + name
        for module in (aiogram.types, aiogram.methods) for name in module.__all__
        if getattr(getattr(module, name), "__pydantic_complete__", False)
    ]
    schemas = {}
    for module in (aiogram.types, aiogram.methods):
        for name in module.__all__:
            model = getattr(module, name)
            if isinstance(model, type) and issubclass(model, BaseModel):
                try:
                    schemas[module.__name__ + "." + name] = model.model_json_schema()
                except Exception as error:  # the same on both sides, or the test fails
                    schemas[module.__name__ + "." + name] = type(error).__name__
    # Validation works on a lazily built type (the bot's first update).
    update = aiogram.types.Update.model_validate({
        "update_id": 1,
        "message": {"message_id": 1, "date": 1, "chat": {"id": 1, "type": "private"},
                    "from": {"id": 1, "is_bot": False, "first_name": "a"}, "text": "hi",
                    "entities": [{"type": "text_mention", "offset": 0, "length": 2,
                                  "user": {"id": 2, "is_bot": False, "first_name": "b"}}]},
    })
    json.dump({"built": len(built), "schemas": schemas,
               "mention": update.message.entities[0].user.first_name}, sys.stdout)
    """
)


def _schemas(*modes: str) -> list[dict]:
    """The script's output for each mode, the interpreters running side by side."""
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", _SCHEMAS, mode],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for mode in modes
    ]
    outputs = []
    for run in runs:
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0, err
        outputs.append(json.loads(out))
    return outputs


def test_lazily_built_types_have_the_schemas_aiogram_builds() -> None:
    eager, lazy = _schemas("eager", "lazy")

    assert eager["built"] > 550  # aiogram's own import builds every type and method…
    assert lazy["built"] < 10  # …the lazy one (almost) none until they are used
    assert len(eager["schemas"]) > 500
    assert lazy["schemas"].keys() == eager["schemas"].keys()
    schemas = eager["schemas"]
    assert [name for name in schemas if lazy["schemas"][name] != schemas[name]] == []
    assert lazy["mention"] == eager["mention"] == "b"
