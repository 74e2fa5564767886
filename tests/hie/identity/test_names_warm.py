"""pypinyin is loaded on demand: not by importing hie, but by the first name or by warm()."""

from __future__ import annotations

import subprocess
import sys


def _loaded_after(code: str) -> bool:
    probe = f"import sys; {code}; print('pypinyin' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    return done.stdout.strip() == "True"


def test_serving_does_not_load_pinyin_until_asked() -> None:
    assert not _loaded_after("import hie.api.app, hie.services, hie.identity.names")
    assert _loaded_after("from hie.identity import names; names.warm()")
    assert _loaded_after("from hie.identity import names; assert names.pinyin('李娜') == 'LINA'")
