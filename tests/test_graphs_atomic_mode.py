"""graphs.atomic: files written atomically get the same permissions as any other file of a run."""
def test_atomic_writes_get_the_permissions_open_would_give(tmp_path):
    import os
    import stat

    from graphs.atomic import atomic_write

    old = os.umask(0o022)
    try:
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
        atomic = atomic_write(tmp_path / "atomic.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(atomic.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode) == 0o644
