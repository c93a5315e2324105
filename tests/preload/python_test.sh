#!/usr/bin/env bash
# python3 doing real work under the preload: a dict of a million entries,
# sorting, a JSON round trip, and 8 threads churning objects. Its checksums
# must equal those of the same program without the preload.
source "$(dirname "$0")/preload_lib.sh"

cat >"$WORK/work.py" <<'PY'
import hashlib, json, random, threading

rng = random.Random(12345)
d = {f"key{i}": [i, rng.random()] for i in range(1_000_000)}
keys = sorted(d, key=lambda k: d[k][1])
h = hashlib.sha256()
for k in keys[::97]:
    h.update(k.encode())
text = json.dumps(d)
back = json.loads(text)
assert back == {k: v for k, v in d.items()}
h.update(hashlib.sha256(text.encode()).digest())
print("dict", len(d), h.hexdigest())
del d, back, text, keys

results = [None] * 8
def churn(t):
    r = random.Random(t)
    acc = hashlib.sha256()
    live = []
    for i in range(15_000):
        obj = {"n": i, "s": "x" * r.randrange(1, 4000), "l": list(range(r.randrange(0, 50)))}
        live.append(obj)
        if len(live) > 500:
            victim = live.pop(r.randrange(len(live)))
            acc.update(json.dumps(victim, sort_keys=True).encode())
    results[t] = acc.hexdigest()
threads = [threading.Thread(target=churn, args=(t,)) for t in range(8)]
for t in threads: t.start()
for t in threads: t.join()
print("threads", hashlib.sha256("".join(results).encode()).hexdigest())
PY

"$PYTHON" "$WORK/work.py" >"$WORK/expected.txt"
preloaded "$WORK/err.txt" "$PYTHON" "$WORK/work.py" >"$WORK/actual.txt"
expect_loaded "$WORK/err.txt"
same_output "$WORK/expected.txt" "$WORK/actual.txt" "python3"
cat "$WORK/actual.txt"
echo PASS
