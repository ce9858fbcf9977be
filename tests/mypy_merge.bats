#!/usr/bin/env bats
# snaprun-merge-mypy: the merge of the mypy recipe,
#   snaprun -c 0,1 --merge=snaprun-merge-mypy .mypy_cache -- mypy --cache-dir {} src
# on caches made by hand in each layout (what it keeps, module by module),
# alone and under snaprun.  With real mypy: slow/mypy_merge.bats.

load common
load conc_helper
load mypy_helper

# mkcache DIR LAYOUT ENTRY...: a cache in DIR, each ENTRY "path=value" or
# "path=value@time" (path as mypy names it below X.Y, "pkg/a.meta.json";
# time when it was written, default 1000).  LAYOUT: shards (16 WAL shards,
# files2; an entry's shard is the first digit of its value, as mypy puts a
# module's entries in one shard), one (cache.db, files2), files (cache.db,
# mypy 1.0's table files), tree (one file each, the time its mtime).
mkcache() {
	python3 - "$@" <<-'EOF'
	import os, sqlite3, sys
	top, layout, entries = sys.argv[1], sys.argv[2], sys.argv[3:]
	d = os.path.join(top, "3.11")
	os.makedirs(d, exist_ok=True)
	def split(e):
	    path, value = e.split("=", 1)
	    value, _, t = value.partition("@")
	    return path, value, float(t or 1000)
	if layout == "tree":
	    for e in entries:
	        path, value, t = split(e)
	        f = os.path.join(d, path)
	        os.makedirs(os.path.dirname(f), exist_ok=True)
	        with open(f, "w") as out:
	            out.write(value)
	        os.utime(f, (t, t))
	    sys.exit()
	table = "files" if layout == "files" else "files2"
	names = [f"cache.{i}.db" for i in range(16)] if layout == "shards" else ["cache.db"]
	dbs = []
	for n in names:
	    db = sqlite3.connect(os.path.join(d, n))
	    if layout == "shards":
	        db.execute("PRAGMA journal_mode=WAL")
	    db.execute(f"CREATE TABLE IF NOT EXISTS {table} (path TEXT UNIQUE NOT NULL, mtime REAL, data BLOB)")
	    db.execute(f"CREATE INDEX IF NOT EXISTS path_idx on {table}(path)")
	    dbs.append(db)
	for e in entries:
	    path, value, t = split(e)
	    db = dbs[int(value[0]) if layout == "shards" else 0]
	    db.execute(f"INSERT INTO {table} VALUES (?, ?, ?)", (path, t, value.encode()))
	for db in dbs:
	    db.commit()
	    db.close()
	EOF
}

# entries DIR: every entry of the cache in DIR, "path=value" sorted, from
# whichever layout it has; fails unless every database passes
# integrity_check and none has a -wal or -journal left beside it.
entries() {
	python3 - "$1" <<-'EOF'
	import glob, os, sqlite3, sys
	d = os.path.join(sys.argv[1], "3.11")
	out = []
	for f in sorted(glob.glob(os.path.join(d, "*.db"))):
	    for side in ("-wal", "-journal"):
	        assert not os.path.exists(f + side) or not os.path.getsize(f + side), f + side
	    db = sqlite3.connect(f)
	    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok", f
	    t = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchone()[0]
	    out += [f"{p}={v.decode()}" for p, v in db.execute(f"SELECT path, data FROM {t}")]
	for root, _, names in os.walk(d):
	    for n in names:
	        f = os.path.join(root, n)
	        if n.endswith(".db") or ".db-" in n:
	            continue
	        with open(f) as i:
	            out.append(f"{os.path.relpath(f, d)}={i.read()}")
	print("\n".join(sorted(out)))
	EOF
}

lines() {
	printf '%s\n' "$@"
}

# ------------------------------------------------------------- by hand

@test "snaprun-merge-mypy, 16 WAL shards: per module, ours or theirs if newer or ours lacks it, never one module's entries from both" {
	mkcache ours shards pkg/a.meta.ff=1ours pkg/a.data.ff=1ours pkg/a.meta_ex.ff=1ours \
		pkg/c.meta.ff=3ours pkg/d.meta.ff=4ours pkg/d.meta_ex.ff=4ours@900
	mkcache theirs shards pkg/a.meta.ff=1theirs pkg/a.data.ff=1theirs \
		pkg/b.meta.ff=2theirs pkg/b.data.ff=2theirs pkg/b.meta_ex.ff=2theirs \
		pkg/c.data.ff=3theirs pkg/__init__.meta.ff=9theirs pkg/d.meta.ff=4theirs@2000
	run "$MERGE_MYPY" ours theirs ""
	[ "$status" -eq 0 ] || { echo "$output" >&2; false; }
	run entries ours
	[ "$status" -eq 0 ] || { echo "$output" >&2; false; }
	[ "$output" = "$(lines pkg/__init__.meta.ff=9theirs \
		pkg/a.data.ff=1ours pkg/a.meta.ff=1ours pkg/a.meta_ex.ff=1ours \
		pkg/b.data.ff=2theirs pkg/b.meta.ff=2theirs pkg/b.meta_ex.ff=2theirs \
		pkg/c.meta.ff=3ours pkg/d.meta.ff=4theirs)" ]
	# each module stays in its shard
	[ "$(python3 -c 'import sqlite3; print(sqlite3.connect("ours/3.11/cache.2.db").execute("select count(*) from files2").fetchone()[0])')" = 3 ]
}

@test "slow: snaprun-merge-mypy, a shard only theirs has: copied, without the modules ours has elsewhere" {
	mkcache ours tree pkg/a.meta.json=ours
	mkcache theirs shards pkg/a.meta.ff=4theirs pkg/b.meta.ff=4theirs
	"$MERGE_MYPY" ours theirs
	[ "$(entries ours | grep -c .)" -eq 2 ]
	entries ours | grep -qx 'pkg/a.meta.json=ours'
	entries ours | grep -qx 'pkg/b.meta.ff=4theirs'
}

@test "slow: snaprun-merge-mypy, one-file caches (files2, and mypy 1.0's files), and two database files" {
	for layout in one files; do
		rm -rf ours theirs
		mkcache ours "$layout" pkg/a.meta.json=0ours pkg/a.data.json=0ours
		mkcache theirs "$layout" pkg/a.meta.json=0theirs pkg/b.meta.json=0theirs pkg/b.data.json=0theirs
		"$MERGE_MYPY" ours theirs
		[ "$(entries ours)" = "$(lines pkg/a.data.json=0ours pkg/a.meta.json=0ours \
			pkg/b.data.json=0theirs pkg/b.meta.json=0theirs)" ]
	done
	rm -rf ours theirs
	mkcache ours files x/a.meta.json=0ours x/n.meta.json=0ours x/n.data.json=0ours
	mkcache theirs files x/a.data.json=0theirs x/b.meta.json=0theirs x/n.meta.json=0theirs@5000
	"$MERGE_MYPY" ours/3.11/cache.db theirs/3.11/cache.db
	[ "$(entries ours)" = "$(lines x/a.meta.json=0ours x/b.meta.json=0theirs x/n.meta.json=0theirs)" ]
}

@test "slow: snaprun-merge-mypy, file trees (JSON and fixed-format): per module, with the modification times mypy compares" {
	mkcache ours tree pkg/a.meta.json=ours pkg/a.data.json=ours @plugins_snapshot.json=ours \
		pkg/n.meta.json=ours pkg/n.data.json=ours pkg/n.deps.json=ours
	mkcache theirs tree pkg/a.meta.json=theirs pkg/b.meta.json=theirs pkg/b.data.json=theirs \
		pkg/sub/__init__.meta.ff=theirs pkg/sub/__init__.data.ff=theirs pkg/sub/__init__.meta_ex.ff=theirs \
		@plugins_snapshot.json=theirs pkg/n.meta.json=theirs@3000 pkg/n.data.json=theirs@2000
	"$MERGE_MYPY" ours theirs base
	[ "$(entries ours)" = "$(lines @plugins_snapshot.json=ours pkg/a.data.json=ours pkg/a.meta.json=ours \
		pkg/b.data.json=theirs pkg/b.meta.json=theirs \
		pkg/n.data.json=theirs pkg/n.meta.json=theirs \
		pkg/sub/__init__.data.ff=theirs pkg/sub/__init__.meta.ff=theirs pkg/sub/__init__.meta_ex.ff=theirs)" ]
	[ "$(stat -c %Y ours/3.11/pkg/n.meta.json)" = 3000 ]
	[ "$(stat -c %Y ours/3.11/pkg/b.data.json)" = "$(stat -c %Y theirs/3.11/pkg/b.data.json)" ]
}

@test "snaprun-merge-mypy: not two caches exits 1, bad usage 2, each saying why" {
	mkdir ours
	echo text >theirs
	run "$MERGE_MYPY" ours theirs
	[ "$status" -eq 1 ]
	[[ "$output" == "snaprun-merge-mypy: "*"not two mypy caches"* ]]
	run "$MERGE_MYPY" ours
	[ "$status" -eq 2 ]
	[[ "$output" == usage:* ]]
}

@test "slow: snaprun-merge-mypy under snaprun: two runs each adding a module to a shared cache, committed in either order, keep both" {
	need_feature exchange
	on_path
	export T
	# addmod CACHE VALUE [HOLD]: module mVALUE into CACHE's shard VALUE[0];
	# with HOLD, then wait for HOLD.go.
	cat >addmod <<-'EOF'
	#!/bin/sh
	python3 -c 'import sqlite3, sys
	db = sqlite3.connect("%s/3.11/cache.%s.db" % (sys.argv[1], sys.argv[2][0]))
	db.execute("insert into files2 values (?, 1.0, ?)", ("m%s.meta.ff" % sys.argv[2], sys.argv[2].encode()))
	db.commit()' "$1" "$2" || exit 1
	[ -n "$3" ] || exit 0
	: >"$T/$3.started"
	while [ ! -e "$T/$3.go" ]; do sleep 0.01; done
	EOF
	chmod +x addmod
	for order in 1 2; do
		rm -rf cache A.*
		mkcache cache shards pkg/base.meta.ff=0base
		if [ "$order" = 1 ]; then mine=1mine other=2other; else mine=2other other=1mine; fi
		timeout 30 "$SNAPRUN" --merge=snaprun-merge-mypy cache -- ./addmod {} "$mine" A 2>A.err 3>&- &
		pid=$!
		wait_for A.started
		"$SNAPRUN" --merge=snaprun-merge-mypy cache -- ./addmod {} "$other"
		touch A.go
		wait "$pid" || { cat A.err >&2; false; }
		grep -q 'snaprun-merge-mypy: ' A.err
		[ "$(entries cache)" = "$(lines m1mine.meta.ff=1mine m2other.meta.ff=2other pkg/base.meta.ff=0base)" ]
	done
	no_leftovers .
}
