"""One Arctic instance per store and process: LMDB does not support a second open of one
environment in a process (ArcticDB warns that reads may then be wrong)."""

import threading

from resources.arctic import ArcticStore


def test_threads_opening_one_store_at_once_share_one_instance_without_warnings(tmp_path, capfd):
    root = tmp_path / "arctic"
    spellings = [f"lmdb://{root}", f"lmdb://{root}/", f"lmdb://{root}/../arctic"]
    start = threading.Barrier(6)
    opened = []

    def open_store(uri: str) -> None:
        start.wait()
        opened.append(ArcticStore(uri=uri).arctic)

    threads = [threading.Thread(target=open_store, args=(spellings[i % 3],)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(opened) == 6 and all(arctic is opened[0] for arctic in opened)
    opened[0].create_library("shared")
    assert ArcticStore(uri=spellings[1]).arctic.list_libraries() == ["shared"]
    assert "already been opened" not in capfd.readouterr().err


def test_different_stores_get_their_own_instance(tmp_path):
    first, second = ArcticStore(uri=f"lmdb://{tmp_path / 'a'}"), ArcticStore(uri=f"lmdb://{tmp_path / 'b'}")
    assert first.arctic is not second.arctic
    first.arctic.create_library("only_in_a")
    assert second.arctic.list_libraries() == []
