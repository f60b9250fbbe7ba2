"""The warm run launcher's pieces that need no daemon (the daemon path: tests/e2e/test_graphql_postgres.py)."""

import os

from resources.run_launcher import (
    PRODUCT_PACKAGES,
    PRODUCT_ROOT,
    WARM_SERVER,
    WarmRunLauncher,
    code_stamp,
    in_daemon,
)


def test_the_code_stamp_changes_when_a_source_file_changes_or_appears(tmp_path):
    for package in PRODUCT_PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    before = code_stamp(tmp_path)
    assert before == code_stamp(tmp_path)
    target = tmp_path / "solvers" / "__init__.py"
    stat = target.stat()
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    touched = code_stamp(tmp_path)
    assert touched != before
    (tmp_path / "batch" / "new.py").write_text("")
    assert code_stamp(tmp_path)[1] == touched[1] + 1


def test_the_product_root_holds_the_product_packages():
    assert all((PRODUCT_ROOT / package / "__init__.py").exists() for package in PRODUCT_PACKAGES)
    assert code_stamp()[1] > 20


def test_outside_a_daemon_the_launcher_starts_no_forkserver():
    assert not in_daemon()
    launcher = WarmRunLauncher()
    assert launcher.inst_data is None
    assert not WARM_SERVER.ready.is_set()
