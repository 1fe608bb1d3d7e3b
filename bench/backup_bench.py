"""Backup and restore, side by side with the stock tools, on the same seeded database.

    source .chatops-env/env && PATH=$CHATOPS_TOOLS_PATH:$PATH \
        .venv/bin/python bench/backup_bench.py --sizes 50000,200000

For each size (messages; plus 200 users and 20 rooms) it measures, each in a child
process of its own so that peak RSS is that tool's alone:

- read:        pymongo reading every document as raw batches (the floor)
- dump:        chatops' dump (raw BSON → tar → isal gzip → S3 multipart + manifest),
               with the oplog capture (`oplog.bson`) when the server keeps an oplog
- mongodump:   `mongodump --gzip --out DIR` of the same database
- mongodump --oplog: `mongodump --oplog --gzip --out DIR`, whole server (mongodump
               refuses `--oplog` with `--db`), where the server has an oplog
- replay:      `--replay N` writes N messages and N edits after the seed, then replays
               those 2N oplog entries into an empty database (entries/s)
- restore:     chatops' restore from S3 (download, check, insert, indexes, verify) with
                1, 2, 4 and 8 insert workers, verified while loading (acknowledged
                digests, counts, a read-back by _id); and with 1 worker followed by the
                full read-back of every document (the verification as it was before)
- mongorestore: `mongorestore --gzip --dir DIR` of mongodump's output (one worker,
                as FerretDB needs; `--noIndexRestore` on FerretDB, which refuses the
                `ns` index option mongorestore adds)

`--tools read,dump,mongodump,mongodump-oplog` measures only those rows (the restores and
mongorestore need the dump and mongodump rows; default: all); `--replay 0` skips the
replay rate; `--repeat N` measures the read, dump and mongodump rows N times in turn (on a
shared machine, ratios of neighbouring rows).

Wall times are single runs on a shared machine: read them as ratios, not as absolutes.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))


WORKERS = tuple(int(w) for w in os.environ.get("BENCH_RESTORE_WORKERS", "1,2,4,8").split(","))
"""Insert workers of the chatops restores measured (`1` also with the full read-back)."""
TOOLS = {
    "read": "read (raw pymongo, the floor)",
    "dump": "chatops dump → S3",
    "mongodump": "mongodump --gzip",
    "mongorestore": "mongorestore --gzip (1 worker, no indexes)",
    **{f"restore-{w}-loaded": f"chatops restore, {w} worker(s), verified while loading"
       for w in WORKERS},
    "restore-1-full": "chatops restore, 1 worker, verified by a full read-back (before)",
}
ALL = ("read", "dump", "mongodump", "mongodump-oplog", "restore", "mongorestore")
"""What `--tools` selects from."""


def run(argv: list[str]) -> dict[str, Any]:
    """Wall time and peak RSS of a child process (GNU time, so the RSS is the child's
    own and not this Python's at fork); its JSON output if it printed any."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as measured:
        start = time.monotonic()
        proc = subprocess.run(
            ["/usr/bin/time", "-f", "%M", "-o", measured.name, *argv],
            capture_output=True, text=True,
        )
        wall = time.monotonic() - start
        peak_kib = int(measured.read().split()[-1])
    if proc.returncode != 0 and "document(s) restored" not in proc.stderr:
        raise SystemExit(f"{argv[:3]} failed:\n{proc.stderr[-2000:]}")
    result: dict[str, Any] = {"seconds": round(wall, 2), "peak_rss_mib": peak_kib // 1024}
    if proc.stdout.strip().startswith("{"):
        result.update(json.loads(proc.stdout))
    return result


def child(mode: str, args: list[str]) -> None:
    from chatops.adapters.mongo import Mongo
    from chatops.adapters.s3 import Store
    from chatops.api.backup import S3Endpoint
    from chatops.backup import bsonstream, dump, fetch, restore, verify

    uri = os.environ["MONGODB_URI"]
    with Mongo(uri) as mongo:
        if mode == "read":
            docs = 0
            for coll in mongo.collections(args[0]):
                for batch in mongo.raw_batches(args[0], coll.name, "primary"):
                    docs += sum(1 for _ in bsonstream.documents(batch))
            print(json.dumps({"documents": docs}))
            return
        endpoint = os.environ["S3_ENDPOINT_URL"]
        store = Store(S3Endpoint(bucket=args[1], endpoint=endpoint, force_path_style=True))
        if mode == "dump":
            m = dump.dump(mongo, store, dump.DumpRequest(prefix="bench/", database=args[0]))
            summary = {"documents": m.documents, "bytes": m.tarball.size, "key": m.tarball.key}
            print(json.dumps(summary))
        elif mode == "restore":
            # args: db bucket key target workers verify(loaded|full)
            workers, how = int(args[4]), args[5]
            request = restore.RestoreRequest(
                mode="DropDatabase", rename={args[0]: args[3]}, workers=workers,
                verify=how == "loaded",
            )
            with tempfile.TemporaryDirectory() as work:
                started = time.monotonic()
                downloaded, contents = fetch.fetch(store, args[2], work)
                fetched = time.monotonic()
                r = restore.load(mongo, downloaded, contents, request)
                loaded = time.monotonic()
                if how == "full":  # the earlier guarantee: every document read back
                    verify.restored(mongo, [
                        verify.Check(args[3], c.name, c) for c in contents.collections
                        if not c.is_view
                    ])
            print(json.dumps({
                "documents": r.documents, "verified": how, "replayed": r.replayed,
                "fetch_s": round(fetched - started, 2), "load_s": round(loaded - fetched, 2),
                "read_back_s": round(time.monotonic() - loaded, 2),
            }))


def replay_child(database: str, target: str, after: str) -> None:
    """Replay the entries of `database` after the position `after` (t.i) into `target`."""
    from chatops.adapters import oplog as oplog_adapter
    from chatops.adapters.mongo import Mongo
    from chatops.backup import oplog

    t, i = (int(x) for x in after.split("."))
    scope = oplog.Namespaces(frozenset({database}))
    with Mongo(os.environ["MONGODB_URI"]) as mongo:
        entries = [e for b in oplog_adapter.read(mongo, oplog.OpTime(t, i), None, scope)
                   for e in oplog.entries(b)]
        applier = oplog_adapter.Applier(mongo, {database: target})
        start = time.monotonic()
        applied = oplog.replay(entries, scope, applier.read, applier.write)
        seconds = time.monotonic() - start
    print(json.dumps({"entries": applied, "replay_seconds": round(seconds, 2),
                      "entries_per_second": round(applied / seconds)}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="50000,200000")
    parser.add_argument("--replay", type=int, default=4000,
                        help="messages written (and edited) for the replay rate; 0: none")
    parser.add_argument("--repeat", type=int, default=1,
                        help="measure the read, dump and mongodump rows this many times, "
                        "alternated (the restores once, after)")
    parser.add_argument("--tools", default=",".join(ALL),
                        help=f"rows to measure, of {','.join(ALL)}")
    ns = parser.parse_args()
    tools = set(ns.tools.split(","))
    if ns.repeat < 1:
        parser.error("--repeat: at least 1")
    if not tools <= set(ALL):
        parser.error(f"--tools: unknown {sorted(tools - set(ALL))}; known: {','.join(ALL)}")
    if tools & {"restore", "mongorestore"} and not {"dump", "mongodump"} <= tools:
        parser.error("--tools: the restores read the dump's and mongodump's output")
    import boto3
    from pymongo import MongoClient

    from test_backup_engine import seed

    uri, endpoint = os.environ["MONGODB_URI"], os.environ["S3_ENDPOINT_URL"]
    client: MongoClient[dict[str, Any]] = MongoClient(uri)
    ferretdb = "ferretdbVersion" in client.admin.command("buildInfo")
    bucket = f"chatops-bench-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
    py = [sys.executable, __file__, "child"]
    rows = []
    for size in (int(s) for s in ns.sizes.split(",") if s):  # "": the replay only
        db, target = f"bench_chat_{size}", f"bench_restored_{size}"
        client.drop_database(db)
        seed(client, db, size)
        out = Path(tempfile.mkdtemp(prefix="bench-"))
        has_oplog = "oplog.rs" in client.local.list_collection_names()
        try:
            for repeat in range(ns.repeat):  # alternated: load drifts alike over each pair
                row: dict[str, Any] = {"messages": size}
                if "read" in tools:
                    row["read"] = run([*py, "read", db])
                if "dump" in tools:
                    row["dump"] = run([*py, "dump", db, bucket])
                if "mongodump" in tools:
                    row["mongodump"] = run(
                        ["mongodump", "--uri", uri, "--db", db, "--gzip", "--out", str(out)]
                    )
                    row["mongodump"]["bytes"] = sum(p.stat().st_size for p in (out / db).iterdir())
                if "mongodump-oplog" in tools and has_oplog:
                    whole = out / "with-oplog"
                    row["mongodump --oplog"] = run(
                        ["mongodump", "--uri", uri, "--oplog", "--gzip", "--out", str(whole)]
                    )
                    row["mongodump --oplog"]["bytes"] = sum(
                        p.stat().st_size for p in whole.rglob("*") if p.is_file()
                    )
                if repeat < ns.repeat - 1:
                    rows.append(row)
                    print(json.dumps(row), flush=True)
            for workers in WORKERS if "restore" in tools else ():
                for how in ("full", "loaded") if workers == 1 else ("loaded",):
                    row[f"restore-{workers}-{how}"] = run(
                        [*py, "restore", db, bucket, row["dump"]["key"], target, str(workers),
                         how]
                    )
                    client.drop_database(target)
            restore_args = [
                "mongorestore", "--uri", uri, "--gzip", "--dir", str(out),
                "--nsFrom", f"{db}.*", "--nsTo", f"{target}.*",
                "--numParallelCollections=1", "--numInsertionWorkersPerCollection=1",
            ]
            if "mongorestore" in tools:
                row["mongorestore"] = run(
                    restore_args + (["--noIndexRestore"] if ferretdb else [])
                )
        finally:
            shutil.rmtree(out, ignore_errors=True)
            client.drop_database(db)
            client.drop_database(target)
        rows.append(row)
        print(json.dumps(row), flush=True)
    replay = None
    if ns.replay and "oplog.rs" in client.local.list_collection_names():
        db, target = "bench_replay", "bench_replayed"
        for name in (db, target):
            client.drop_database(name)
        client[db].seed.insert_one({"_id": 0})
        last = client.local["oplog.rs"].find_one({}, sort=[("$natural", -1)])["ts"]
        client[db].messages.insert_many(
            [{"_id": n, "room": f"room-{n % 20}", "text": f"message {n}"} for n in range(ns.replay)]
        )
        for n in range(ns.replay):
            client[db].messages.update_one({"_id": n}, {"$set": {"text": f"edited {n}"}})
        replay = run([*py, "replay", db, target, f"{last.time}.{last.inc}"])
        assert client[target].messages.count_documents({"text": {"$regex": "^edited"}}) == ns.replay
        for name in (db, target):
            client.drop_database(name)
    print(f"\n{datetime.datetime.now(datetime.UTC):%Y-%m-%d}, server "
          f"{'FerretDB' if ferretdb else 'MongoDB'}, S3 at {endpoint}")
    print("| messages | tool | seconds | peak RSS MiB | bytes | fetch / load / read-back s |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        for tool in [t for t in row if t != "messages"]:
            r = row[tool]
            parts = " / ".join(str(r[k]) for k in ("fetch_s", "load_s", "read_back_s") if k in r)
            print(f"| {row['messages']} | {TOOLS.get(tool, tool)} | {r['seconds']} "
                  f"| {r['peak_rss_mib']} | {r.get('bytes', '')} | {parts} |")
    if replay:
        print(f"\nreplay: {replay['entries']} entries in {replay['replay_seconds']} s, "
              f"{replay['entries_per_second']} entries/s (child peak RSS "
              f"{replay['peak_rss_mib']} MiB)")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1:3] == ["child", "replay"]:
        replay_child(*sys.argv[3:6])
    elif len(sys.argv) > 1 and sys.argv[1] == "child":
        child(sys.argv[2], sys.argv[3:])
    else:
        main()
