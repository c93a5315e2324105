#!/usr/bin/env bash
# A multithreaded python3 with PYTHONMALLOC=malloc, so every object (not
# only those over pymalloc's 512 bytes) comes from malloc: producers build
# dicts, lists, strings and bytearrays that consumer threads check and free
# (cross-thread frees), a thread pool grows and sorts containers (realloc
# churn), and large buffers are dropped from threads other than their
# allocator's. The printed checksums must equal those of a plain run.
source "$(dirname "$0")/../preload/preload_lib.sh"

cat >"$WORK/threads.py" <<'PY'
import concurrent.futures, hashlib, queue, random, threading

MOD = 1 << 128

def digest(obj):
    return int.from_bytes(hashlib.sha256(repr(obj).encode()).digest()[:16], "little")

def make(r, i):
    n = r.randrange(0, 40)
    return {
        "id": i,
        "name": "item-%d-" % i + "abcdefgh" * r.randrange(0, 300),
        "tags": [str(r.randrange(10**6)) for _ in range(n)],
        "blob": bytes(r.randrange(256) for _ in range(r.randrange(0, 2000))),
        "nested": {str(k): [k] * (k % 7) for k in range(n)},
    }

# Producers and consumers: objects die on a thread other than their maker.
# The sums are order-independent, so the interleaving does not matter.
q = queue.Queue(maxsize=256)
produced = [0] * 4
consumed = [0] * 4
def producer(t):
    r = random.Random(100 + t)
    for i in range(4000):
        obj = make(r, t * 100000 + i)
        produced[t] = (produced[t] + digest(obj)) % MOD
        q.put(obj)
def consumer(t):
    while True:
        obj = q.get()
        if obj is None:
            return
        consumed[t] = (consumed[t] + digest(obj)) % MOD
        del obj
producers = [threading.Thread(target=producer, args=(t,)) for t in range(4)]
consumers = [threading.Thread(target=consumer, args=(t,)) for t in range(4)]
for t in producers + consumers: t.start()
for t in producers: t.join()
for _ in consumers: q.put(None)
for t in consumers: t.join()
p, c = sum(produced) % MOD, sum(consumed) % MOD
assert p == c, "consumers saw other objects than producers made"
print("queue %032x" % p)

# A pool growing strings, bytearrays, lists and dicts, then sorting them.
def grow(seed):
    r = random.Random(seed)
    buf = bytearray()
    text = []
    d = {}
    for i in range(20000):
        buf += bytes([i & 255]) * r.randrange(1, 64)
        text.append(chr(0x41 + i % 26) * r.randrange(1, 20))
        d[(seed, i % 5000)] = "v" * r.randrange(0, 100)
        if len(buf) > 300000:
            del buf[: r.randrange(len(buf))]
    s = "".join(sorted(text))
    items = sorted(d.items())
    h = hashlib.sha256(bytes(buf))
    h.update(s.encode())
    h.update(repr(items).encode())
    return h.hexdigest()
with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
    print("pool", hashlib.sha256("".join(pool.map(grow, range(24))).encode()).hexdigest())

# Large buffers (page-heap sizes) made on one thread, freed on another.
big = queue.Queue()
def make_big():
    r = random.Random(7)
    for i in range(200):
        big.put(bytearray(r.randrange(1 << 16, 1 << 22)))
    big.put(None)
sizes = []
def drop_big():
    while (b := big.get()) is not None:
        b[-1] = 1
        sizes.append(len(b))
        del b
threads = [threading.Thread(target=make_big), threading.Thread(target=drop_big)]
for t in threads: t.start()
for t in threads: t.join()
print("big", len(sizes), sum(sizes))
PY

export PYTHONMALLOC=malloc
"$PYTHON" "$WORK/threads.py" >"$WORK/expected.txt"
preloaded "$WORK/err.txt" "$PYTHON" "$WORK/threads.py" >"$WORK/actual.txt"
expect_loaded "$WORK/err.txt"
same_output "$WORK/expected.txt" "$WORK/actual.txt" "python3 threads"
[ "$(wc -l <"$WORK/actual.txt")" -eq 3 ] || fail "expected 3 result lines"
cat "$WORK/actual.txt"
echo PASS
