"""Per compiled step: the fusions that compute tanh, with their result shapes."""
import collections, gzip, re, sys
for path in sys.argv[1:]:
  txt = gzip.open(path, "rt").read()
  comps, cur = {}, None
  for line in txt.splitlines():
    m = re.match(r"^(?:ENTRY )?%(\S+) ", line)
    if m and line.rstrip().endswith("{"):
      cur = m.group(1); comps[cur] = []
    elif cur:
      comps[cur].append(line)
  tanh = {c for c, ls in comps.items() if any(" tanh(" in l for l in ls)}
  shapes = collections.Counter()
  for c, ls in comps.items():
    for l in ls:
      m = re.search(r"= (\(.*?\)|\S+) fusion\(.*calls=%([\w.\-]+)", l)
      if m and m.group(2) in tanh:
        shapes[re.sub(r"\{[0-9,]*\}", "", m.group(1))] += 1
  print(path, sum(shapes.values()), "fusions with tanh")
  for s, n in shapes.most_common():
    print(f"  {n:3d}  {s}")
