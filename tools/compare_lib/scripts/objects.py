"""Object-heavy Python: records as dicts and class instances, JSON round
trips, sorting, grouping, a tree, and freeing half of everything. Run with
PYTHONMALLOC=malloc so every object comes from malloc. Prints checksums that
depend only on the computation, never on addresses or timing."""

import hashlib
import json
import random
import sys


class Node:
    def __init__(self, key, value, children):
        self.key = key
        self.value = value
        self.children = children


def tree(r, depth):
    if depth == 0:
        return Node(r.randrange(10**6), "leaf" * r.randrange(1, 8), [])
    return Node(r.randrange(10**6), str(depth), [tree(r, depth - 1)
                                                  for _ in range(r.randrange(1, 4))])


def walk(node):
    total, count, stack = 0, 0, [node]
    while stack:
        n = stack.pop()
        total += n.key + len(n.value)
        count += 1
        stack.extend(n.children)
    return total, count


def main():
    n = int(sys.argv[1])
    r = random.Random(2026)
    digest = hashlib.sha256()
    records = []
    for i in range(n):
        k = r.randrange(0, 40)
        records.append({
            "id": i,
            "name": "user-%d-%s" % (i, "x" * r.randrange(0, 64)),
            "tags": ["t%d" % r.randrange(1000) for _ in range(k)],
            "scores": [r.random() for _ in range(k // 2)],
            "pair": (i, str(i * 7)),
        })
    text = [json.dumps(rec, sort_keys=True) for rec in records]
    back = [json.loads(t) for t in text]
    assert all(b["id"] == rec["id"] and b["tags"] == rec["tags"] for b, rec in zip(back, records))
    digest.update("".join(text).encode())
    by_tag = {}
    for rec in back:
        for t in rec["tags"]:
            by_tag.setdefault(t, []).append(rec["id"])
    top = sorted(by_tag.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:20]
    digest.update(repr(top).encode())
    ordered = sorted(back, key=lambda rec: (len(rec["tags"]), rec["name"][-5:], rec["id"]))
    digest.update(repr([rec["id"] for rec in ordered]).encode())
    # Free a random half, then grow again: reuse of freed memory.
    r.shuffle(back)
    del back[: len(back) // 2]
    words = " ".join(rec["name"] for rec in back).split("-")
    digest.update(("|".join(sorted(set(words)))).encode())
    forest = [tree(r, 7) for _ in range(max(1, n // 2000))]
    sums = [walk(t) for t in forest]
    digest.update(repr(sums).encode())
    print("records %d tags %d kept %d nodes %d" % (n, len(by_tag), len(back),
                                                   sum(c for _, c in sums)))
    print("sha256 %s" % digest.hexdigest())


main()
