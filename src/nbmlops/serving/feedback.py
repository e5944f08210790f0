"""Outcomes that arrive after the answer: `POST /feedback` joins an outcome to an answered
record by its request id.

Accepted labels are appended to `labels.jsonl` beside the request archive (synced to the disk
before the answer), never written into an archived record. Each item gets its own answer:

- `accepted`;
- `unknown`: no answered request has that id (or that record number);
- `duplicate`: the record already has this outcome (nothing is written);
- `contradicts`: the record already has the other outcome; the first one stands;
- `invalid`: the item is not `{"request_id": ..., "outcome": 0 or 1}` (with `record`, the
  record's place in a request of several, 0 by default).

When the labels file cannot be written, nothing of the body is recorded and the answer is
503 (counted as `unwritable`), so the sender can send it all again.

The ids of every archived request are known from the archive folder when the service starts,
from each answer handed to the archive after that, and from the folder again when an unknown
id comes (another service on the folder may have answered it); labels too, so a duplicate
sent after a restart is seen.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from pathlib import Path

from .. import storage
from ..records import KEY, LABELLED_AT, LABELS_FILE, OUTCOME, read_archive, read_labels

STATUSES = ("accepted", "unknown", "duplicate", "contradicts", "invalid", "unwritable")
#: An unknown id makes the archive's ids be read again, at most this often (another service
#: on the same folder may have answered it).
REFRESH_SECONDS = 10.0
#: Outcomes as JSON may spell them: 0 and 1, or false and true (Python's False == 0).
OUTCOMES = {0: 0, 1: 1}


class Feedback:
    """Request ids answered, labels recorded, and the labels file they go to."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.lock = threading.Lock()
        self._refreshed = time.monotonic()
        self.requests: dict[str, int] = archived_requests(self.folder)
        labels, _ = read_labels(self.folder)
        self.labels: dict[tuple[str, int], int] = {
            (str(r), int(i)): int(o) for r, i, o in labels[[*KEY, OUTCOME]].itertuples(index=False)
        }

    def answered(self, request_id: str, records: int) -> None:
        self.requests[request_id] = records

    def _refresh(self) -> None:
        """Read the archive's request ids again (at most every REFRESH_SECONDS): another
        service on the same folder answered them."""
        if time.monotonic() - self._refreshed < REFRESH_SECONDS:
            return
        self._refreshed = time.monotonic()
        self.requests = archived_requests(self.folder) | self.requests

    def _judge(self, item) -> dict:
        if not isinstance(item, dict) or "request_id" not in item or OUTCOME not in item:
            return {"status": "invalid",
                    "detail": 'send {"request_id": ..., "outcome": 0 or 1} (and "record" '
                              "for a request of several records)"}  # fmt: skip
        request_id, record = str(item["request_id"]), item.get("record", 0)
        out = {"request_id": request_id, "record": record}
        outcome = item[OUTCOME]
        if isinstance(outcome, float) and outcome in (0.0, 1.0):
            outcome = int(outcome)
        if not isinstance(outcome, int) or outcome not in OUTCOMES:  # bool is an int
            return out | {"status": "invalid", "detail": f"outcome must be 0 or 1, not {outcome!r}"}
        if isinstance(record, bool) or not isinstance(record, int) or record < 0:
            return out | {"status": "invalid", "detail": "record must be a whole number >= 0"}
        size = self.requests.get(request_id)
        if size is None:
            self._refresh()
            size = self.requests.get(request_id)
        if size is None:
            return out | {"status": "unknown", "detail": "no answered request has this id"}
        if record >= size:
            return out | {"status": "unknown",
                          "detail": f"the request held {size} record(s)"}  # fmt: skip
        value, found = int(OUTCOMES[outcome]), self.labels.get((request_id, record))
        if found is None:
            return out | {"status": "accepted", OUTCOME: value}
        if found == value:
            return out | {"status": "duplicate", "detail": "this outcome is already recorded"}
        return out | {
            "status": "contradicts",
            "recorded": found,
            "detail": f"outcome {found} is already recorded; the first one stands",
        }

    def take(self, items: list) -> tuple[list[dict], Counter]:
        """Judge every item, append the accepted ones (synced), and count each status."""
        with self.lock:
            results, accepted = [], {}
            for item in items:
                result = self._judge(item)
                key = (result.get("request_id"), result.get("record"))
                if result["status"] == "accepted" and key in accepted:  # twice in one body
                    same = accepted[key][OUTCOME] == result[OUTCOME]
                    result = result | (
                        {"status": "duplicate", "detail": "this outcome is already recorded"}
                        if same else {"status": "contradicts", "recorded": accepted[key][OUTCOME],
                                      "detail": "another outcome came first in this body; "
                                                "the first one stands"})  # fmt: skip
                elif result["status"] == "accepted":
                    accepted[key] = {
                        "request_id": key[0],
                        "record": key[1],
                        OUTCOME: result[OUTCOME],
                        LABELLED_AT: time.time(),
                    }
                results.append(result)
            if accepted:
                self._append(list(accepted.values()))  # on the disk before it is known
                self.labels |= {k: row[OUTCOME] for k, row in accepted.items()}
        return results, Counter(r["status"] for r in results)

    def _append(self, rows: list[dict]) -> None:
        """One write of whole lines, then a sync: a label answered `accepted` is on the disk."""
        storage.append_json_lines(self.folder / LABELS_FILE, rows)


def archived_requests(folder: Path) -> dict[str, int]:
    """Request id to the records it held, for every request archived in the folder."""
    answered = read_archive(folder, KEY)
    if not len(answered):
        return {}
    sizes = answered.groupby("request_id")["record"].max() + 1
    return {str(k): int(v) for k, v in sizes.items()}


def items_of(body: bytes) -> list:
    """The items of a /feedback body: one object, a list, or {"labels": [...]}."""
    data = json.loads(body)
    if isinstance(data, dict) and isinstance(data.get("labels"), list):
        return data["labels"]
    return data if isinstance(data, list) else [data]
