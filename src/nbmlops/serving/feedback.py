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

The last `RECENT_REQUESTS` requests this process answered are known in memory, with the
labels they got; an older id (answered before a restart, by another service on the folder, or
long ago) is looked up in the archive (`records.Finder`, which reads only the files that can
hold it) and its labels in the labels file, once for all such ids of a body. So memory stays
flat however long the service runs, and a duplicate sent after a restart is still seen.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, OrderedDict
from pathlib import Path

from .. import storage
from ..records import KEY, LABELLED_AT, LABELS_FILE, OUTCOME, Finder, request_id_of

STATUSES = ("accepted", "unknown", "duplicate", "contradicts", "invalid", "unwritable")
#: Requests answered by this process whose sizes and labels are kept in memory.
RECENT_REQUESTS = 50_000
#: Outcomes as JSON may spell them: 0 and 1, or false and true (Python's False == 0).
OUTCOMES = {0: 0, 1: 1}


class Feedback:
    """Requests answered lately and their labels, the archive for older ones, and the labels
    file the accepted ones go to."""

    def __init__(self, folder: str | Path, recent: int = RECENT_REQUESTS):
        self.folder = Path(folder)
        self.lock = threading.Lock()
        self.finder = Finder(self.folder)
        self.keep = recent
        # written by the answering thread without the lock: single dict operations only
        self.recent: OrderedDict[str, int] = OrderedDict()
        self.labels: dict[str, dict[int, int]] = {}  # of recent requests: record -> outcome

    def answered(self, request_id: str, records: int) -> None:
        self.recent[request_id] = records
        if len(self.recent) > self.keep:
            self.recent.popitem(last=False)

    def _look_up(self, ids: set[str]) -> tuple[dict[str, int], dict[str, dict[int, int]]]:
        """Sizes of the archived requests among `ids`, and their labels in the labels file
        (the first outcome of each record)."""
        found = self.finder.rows(ids, KEY)
        sizes = {str(k): int(v) + 1 for k, v in found.groupby("request_id")["record"].max().items()}
        labels: dict[str, dict[int, int]] = {}
        if not sizes:  # no archived request: no label to look for
            return sizes, labels
        try:
            with (self.folder / LABELS_FILE).open(encoding="utf-8") as fh:
                for line in fh:
                    if request_id_of(line) not in sizes:
                        continue
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError:  # cut off by a crash
                        continue
                    labels.setdefault(str(row["request_id"]), {}).setdefault(
                        int(row["record"]), int(row[OUTCOME])
                    )
        except FileNotFoundError:
            pass
        return sizes, labels

    @staticmethod
    def _judge(item, sizes: dict[str, int], labels: dict[str, dict[int, int]]) -> dict:
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
        size = sizes.get(request_id)
        if size is None:
            return out | {"status": "unknown", "detail": "no answered request has this id"}
        if record >= size:
            return out | {"status": "unknown",
                          "detail": f"the request held {size} record(s)"}  # fmt: skip
        value, found = int(OUTCOMES[outcome]), labels.get(request_id, {}).get(record)
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
            ids = {str(i["request_id"]) for i in items
                   if isinstance(i, dict) and "request_id" in i}  # fmt: skip
            sizes = {i: n for i in ids if (n := self.recent.get(i)) is not None}
            labels = {i: self.labels[i] for i in sizes if i in self.labels}
            if older := ids - set(sizes):
                found, known = self._look_up(older)
                sizes |= found
                labels |= known
            results, accepted = [], {}
            for item in items:
                result = self._judge(item, sizes, labels)
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
                for (request_id, record), row in accepted.items():
                    if request_id in self.recent:
                        self.labels.setdefault(request_id, {})[record] = row[OUTCOME]
            # the labels of requests no longer recent go (they are in the labels file)
            for request_id in [r for r in self.labels if r not in self.recent]:
                del self.labels[request_id]
        return results, Counter(r["status"] for r in results)

    def _append(self, rows: list[dict]) -> None:
        """One write of whole lines, then a sync: a label answered `accepted` is on the disk."""
        storage.append_json_lines(self.folder / LABELS_FILE, rows)


def items_of(body: bytes) -> list:
    """The items of a /feedback body: one object, a list, or {"labels": [...]}."""
    data = json.loads(body)
    if isinstance(data, dict) and isinstance(data.get("labels"), list):
        return data["labels"]
    return data if isinstance(data, list) else [data]
