"""The check every bad-input row shares: `sweep ...` in process exits 2 with its message, and
nothing was started (no MLflow store, no Ray, no sweep folder)."""
from __future__ import annotations

from pathlib import Path

from cluster.cli import main


def assert_refused(argv: list[str], fragments: list[str], tmp_path: Path, capsys) -> None:
    """Run the CLI with `argv` (a throwaway store, storage path and name added where absent).

    Asserts exit code 2, every fragment in stderr, no traceback, no mlflow.db, Ray not started
    and no sweep folder.
    """
    import ray

    db = tmp_path / "mlflow.db"
    argv = list(argv)
    if "--tracking-uri" not in argv:
        argv += ["--tracking-uri", f"sqlite:///{db}"]
    if "--storage-path" not in argv:
        argv += ["--storage-path", str(tmp_path / "ray_results")]
    if "--name" not in argv:
        argv += ["--name", "bad"]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse refuses malformed flags itself, also with code 2
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in: {err}"
    assert "Traceback" not in err
    assert not db.exists(), "an MLflow database was created for refused input"
    assert not ray.is_initialized(), "Ray was started for refused input"
    assert not (tmp_path / "ray_results" / "bad").exists()
