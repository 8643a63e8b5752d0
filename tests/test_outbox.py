"""anomalyd.store.outbox.Outbox on a real LMDB store, without a server."""

from __future__ import annotations

import pytest

from anomalyd.alerting import OPENED, Alert, Change
from anomalyd.store import Store
from anomalyd.store.outbox import EPOCH, SEQ, Outbox, _event


@pytest.fixture
def store(tmp_path):
    s = Store(str(tmp_path / "data"), map_size=4 << 20)
    yield s
    s.close()


def test_an_epoch_drawn_in_an_aborted_transaction_is_not_used(store):
    # The first event's group commit can fail (another operation's write, a full
    # disk): the epoch drawn in it is rolled back, so the next event draws the one
    # the store keeps, and its id carries that one.
    outbox = Outbox(store, 100)
    change = Change(OPENED, Alert(1, 10, 10, 1, 5.0, 1.0, 10), None)
    with pytest.raises(RuntimeError), store.write() as txn:
        outbox.record(txn, "s", [change], {}, 4.0, 1.0)
        raise RuntimeError("the group fails")
    with store.write() as txn:
        outbox.record(txn, "s", [change], {}, 4.0, 2.0)
    with store.env.begin() as txn:
        stored = txn.get(EPOCH, db=outbox.meta)
        event = _event(txn.get(SEQ.pack(0), db=outbox.events))
    assert stored is not None
    epoch = bytes(stored).hex()
    assert event.id == f"{epoch}-0"
    assert Outbox(store, 100).epoch == epoch
