"""selector.atomic: outputs checked before any work (``check_outputs``), and ``atomic_write`` that refuses
to replace a file when asked not to."""
from __future__ import annotations

import pytest


def test_check_outputs(tmp_path):
    from selector.atomic import OutputExistsError, check_outputs

    (tmp_path / "a.json").write_text("x")
    (tmp_path / "d.csv").mkdir()
    check_outputs([tmp_path / "new.json", tmp_path / "new.config.xml"], force=False)
    check_outputs([tmp_path / "a.json"], force=True)
    with pytest.raises(OutputExistsError, match=r"output .*a.json exists; pass --force to overwrite it") as e:
        check_outputs([tmp_path / "new.json", tmp_path / "a.json"], force=False)
    assert e.value.path == tmp_path / "a.json"
    with pytest.raises(OutputExistsError, match="is a folder; give a file name"):
        check_outputs([tmp_path / "d.csv"], force=True)


def test_atomic_write_without_overwrite(tmp_path):
    from selector.atomic import OutputExistsError, atomic_write

    p = tmp_path / "f.txt"
    with atomic_write(p, "w", overwrite=False) as f:
        f.write("one")
    with pytest.raises(OutputExistsError):
        with atomic_write(p, "w", overwrite=False) as f:
            f.write("two")
    assert p.read_text() == "one" and sorted(x.name for x in tmp_path.iterdir()) == ["f.txt"]
