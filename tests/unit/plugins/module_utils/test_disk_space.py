"""Where disk_space measures, on plain values: the data directory found or the exact reason it was not."""

import os

from ansible_collections.sigeti.dwh.plugins.module_utils.backup import disk_space
from ansible_collections.sigeti.dwh.plugins.module_utils.catalog.backup import DiskFacts, TableSpaceUse


def facts(data_directory=None, uses=()):
    return DiskFacts(tuple(uses), data_directory, 5432, 4242, "dwh_owner", 1700000000)


def server_folder(tmp_path, port=5432, started=1700000000):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "postmaster.pid").write_text("99\n%s\n%d\n%d\n/run\n" % (folder, started, port))
    return str(folder)


def no_proc(path):
    raise PermissionError(path)


def test_without_setting_option_nor_a_visible_process_the_warning_names_the_right_and_the_variable():
    folder, why = disk_space.data_directory("", facts(), read_link=no_proc)
    assert folder is None
    assert "GRANT pg_read_all_settings TO dwh_owner" in why and "dwh_data_directory" in why


def test_the_process_working_directory_counts_only_when_it_is_this_server(tmp_path):
    good = server_folder(tmp_path)
    assert disk_space.data_directory("", facts(), read_link=lambda _p: good) == (
        good,
        "the server process's working directory",
    )
    os.makedirs(tmp_path / "other")
    other = server_folder(tmp_path / "other", started=1600000000)  # another cluster on the same port
    assert disk_space.data_directory("", facts(), read_link=lambda _p: other)[0] is None


def test_a_given_folder_is_the_one_meant(tmp_path):
    good = server_folder(tmp_path)
    assert disk_space.data_directory(str(tmp_path), facts(good), read_link=no_proc)[0] is None
    assert disk_space.data_directory(good, facts(), read_link=no_proc)[0] == good
    assert "not on this host" in disk_space.data_directory("", facts("/nowhere/data"), read_link=no_proc)[1]


def test_tablespaces_on_one_filesystem_are_summed_and_an_unseen_place_is_reported(tmp_path):
    data = server_folder(tmp_path)
    uses = [
        TableSpaceUse("dwh_facts.a", "", 100),
        TableSpaceUse("dwh_facts.a", str(tmp_path), 50),
        TableSpaceUse("dwh_facts.b", "/nowhere/ts", 7),
    ]
    needs = disk_space.needs(facts(uses=uses), 2.0, data, "why")
    assert [(n.tables, n.bytes, n.folder is None) for n in needs] == [
        (("dwh_facts.a",), 300, False),
        (("dwh_facts.b",), 14, True),
    ]
    assert "not on this host" in needs[1].why_unseen
    assert disk_space.doing(["t"], {"t": ["migrate", "full"]}) == "t (migration, VACUUM FULL / pg_repack)"
